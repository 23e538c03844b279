package checkpoint

import "github.com/ferrypipe/ferry/batch"

// OnCommit makes db call f after each commit with the records it wrote,
// from the writer goroutine. Call it before Begin.
func OnCommit(db *DB, f func([]batch.Record)) { db.onCommit = f }
