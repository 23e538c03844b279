package checkpoint

import "github.com/ferrypipe/ferry/batch"

// OnCommit makes db call f after each commit with the records it wrote,
// from the writer goroutine. Call it before Begin.
func OnCommit(db *DB, f func([]batch.Record)) { db.onCommit = f }

// OnTake makes db's writer call f when it has taken the first record of a
// transaction, before it takes the others queued. Call it before Begin.
func OnTake(db *DB, f func()) { db.onTake = f }

// MaxBatch sets the most records db writes in one transaction. Call it
// before Begin.
func MaxBatch(db *DB, n int) { db.cfg.maxBatch = n }
