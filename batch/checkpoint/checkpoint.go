// Package checkpoint records the progress of batch jobs in a SQLite
// database, so that an interrupted run can resume: a DB is a
// batch.Checkpointer.
//
//	cp, err := checkpoint.Open("convert.ckpt")
//	if err != nil { return err }
//	res, err := job.Run(ctx, params, batch.WithCheckpoint(cp), batch.Resume())
//
// Run calls Begin, Record for every index that finishes and Close at the
// end; a DB serves one run, so open it again for the next one. Records are
// written by one goroutine, which commits everything queued at once (group
// commit), so Record costs the caller a channel send. The database is in
// WAL mode: a transaction that committed survives the death of the process
// (SIGKILL included), and what was queued but not committed is simply not
// there, so the indices it held run again on resume.
//
// The database is the user's to inspect with the sqlite3 tool; its schema
// is described in docs/checkpoint.md. SQLite comes from modernc.org/sqlite
// (pure Go, no cgo), which is why this is a package of its own: the batch
// package does not depend on it.
package checkpoint

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ferrypipe/ferry/batch"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// An Option configures Open.
type Option func(*config)

type config struct {
	logger   *slog.Logger
	queue    int
	maxBatch int
	syncFull bool
	errs     []error
}

// Logger receives the DB's log records: failed writes, misuse (default
// slog.Default()).
func Logger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// QueueSize sets how many records may wait for the writer before Record
// blocks (default 16384). A transaction holds everything queued when it
// starts, up to 8192 records.
func QueueSize(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.errs = append(c.errs, fmt.Errorf("QueueSize(%d), want ≥ 1", n))
			return
		}
		c.queue = n
	}
}

// SyncFull makes every commit wait until it is on stable storage
// (PRAGMA synchronous=FULL), so that it survives a power failure or an
// operating-system crash as well. By default (synchronous=NORMAL) a
// committed transaction survives the death of the process, however it
// dies, but the last ones before a power failure may be rolled back; the
// database is consistent either way.
func SyncFull() Option { return func(c *config) { c.syncFull = true } }

// DB is a batch.Checkpointer that writes to a SQLite database. Its
// methods are safe for concurrent use.
type DB struct {
	path string // as given to Open, for errors
	log  *slog.Logger
	cfg  config

	sqlDB *sql.DB
	conn  *sql.Conn // the one connection: Begin, then the writer

	mu     sync.RWMutex // Record holds it shared while it sends; Close exclusively
	job    string       // ID of the job of Begin; "" before Begin
	queue  chan batch.Record
	closed bool

	writerDone chan struct{} // closed when the writer has ended

	errMu    sync.Mutex
	firstErr error

	closeOnce sync.Once
	closeErr  error

	// onCommit, if set (tests only), is called by the writer after each
	// commit with the records it wrote.
	onCommit func([]batch.Record)
	// onTake, if set (tests only), is called by the writer when it has
	// taken the first record of a transaction, before it takes the
	// others queued.
	onTake func()
}

var _ batch.Checkpointer = (*DB)(nil)

// schemaVersion is stored in PRAGMA user_version. A database written by a
// later version of the schema is refused.
const schemaVersion = 1

const schema = `
CREATE TABLE IF NOT EXISTS jobs (
	id      TEXT PRIMARY KEY,
	name    TEXT NOT NULL,
	len     INTEGER NOT NULL,
	spec    TEXT NOT NULL,
	created TEXT NOT NULL,
	updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS indices (
	job_id   TEXT NOT NULL,
	idx      INTEGER NOT NULL,
	status   TEXT NOT NULL CHECK (status IN ('done', 'failed')),
	output   TEXT,
	state    TEXT,
	error    TEXT,
	attempts INTEGER NOT NULL,
	worker   TEXT NOT NULL,
	started  TEXT,
	finished TEXT,
	PRIMARY KEY (job_id, idx)
);
`

// rowsPerInsert is the number of rows of one INSERT statement.
const rowsPerInsert = 64

// insertRows returns an INSERT statement of n rows into indices. A row
// replaces the row of the same index, if any.
func insertRows(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT OR REPLACE INTO indices
	(job_id, idx, status, output, state, error, attempts, worker, started, finished) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?)")
	}
	return b.String()
}

// Open opens the checkpoint database at path, creating the file if it does
// not exist, and switches it to WAL mode. The tables are created by Begin.
// A path that cannot be opened for reading and writing fails with the
// operating system's reason (an *fs.PathError: errors.Is(err,
// fs.ErrNotExist) for a missing directory, fs.ErrPermission, …).
func Open(path string, opts ...Option) (*DB, error) {
	cfg := config{logger: slog.Default(), queue: 16384, maxBatch: 8192}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if len(cfg.errs) > 0 {
		return nil, fmt.Errorf("checkpoint: open %s: %w", path, errors.Join(cfg.errs...))
	}
	if path == "" {
		return nil, errors.New("checkpoint: open: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open %s: %w", path, err)
	}
	// SQLite would only say "unable to open database file": ask the
	// operating system why.
	if f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return nil, fmt.Errorf("checkpoint: open %s: %w", path, err)
	} else if err := f.Close(); err != nil {
		return nil, fmt.Errorf("checkpoint: open %s: %w", path, err)
	}
	// A URI, so that any file name works: '?' and '#' are escaped, and
	// SQLite decodes them.
	dsn := "file:" + (&url.URL{Path: abs}).EscapedPath()
	sqlDB, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: open %s: %w", path, err)
	}
	sqlDB.SetMaxOpenConns(1)
	db := &DB{path: path, log: cfg.logger.With("checkpoint", path), cfg: cfg, sqlDB: sqlDB}
	ctx := context.Background()
	db.conn, err = sqlDB.Conn(ctx)
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("checkpoint: open %s: %w", path, err)
	}
	syncMode := "NORMAL"
	if cfg.syncFull {
		syncMode = "FULL"
	}
	pragmas := []string{
		"PRAGMA busy_timeout = 10000", // another process may hold the lock for a while
		"PRAGMA journal_mode = WAL",   // reads the header: fails on a file that is not a database
		"PRAGMA synchronous = " + syncMode,
	}
	for _, p := range pragmas {
		if _, err := db.conn.ExecContext(ctx, p); err != nil {
			db.conn.Close()
			sqlDB.Close()
			return nil, fmt.Errorf("checkpoint: open %s: %s: %w", path, p, err)
		}
	}
	return db, nil
}

// Path returns the path the DB was opened with.
func (db *DB) Path() string { return db.path }

func (db *DB) errorf(format string, args ...any) error {
	return fmt.Errorf("checkpoint %s: "+format, append([]any{db.path}, args...)...)
}

// setErr keeps err if it is the first error.
func (db *DB) setErr(err error) {
	db.errMu.Lock()
	defer db.errMu.Unlock()
	if db.firstErr == nil {
		db.firstErr = err
	}
}

// Begin creates the tables if needed and records job. With resume, it
// returns the records of the indices an earlier run of job (same ID)
// finished successfully, in index order; the failed ones are not returned,
// so that they run again. Without resume, it deletes what earlier runs of
// job recorded. It starts the writer, and may be called once.
func (db *DB) Begin(ctx context.Context, job batch.JobInfo, resume bool) ([]batch.Record, error) {
	if job.ID == "" {
		return nil, db.errorf("begin job %q: empty job ID", job.Name)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	switch {
	case db.closed:
		return nil, db.errorf("begin job %q: the DB is closed", job.Name)
	case db.job != "":
		return nil, db.errorf("begin job %q: Begin was already called (job %s); a DB serves one run", job.Name, db.job)
	}
	recs, err := db.begin(ctx, job, resume)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			// The driver reports an interrupted statement as SQLite's
			// "interrupted", not as the context's error.
			err = fmt.Errorf("%w (%v)", cerr, err)
		}
		return nil, db.errorf("begin job %q (%s): %w", job.Name, job.ID, err)
	}
	db.job = job.ID
	db.queue = make(chan batch.Record, db.cfg.queue)
	db.writerDone = make(chan struct{})
	go db.writer(db.queue, job.ID)
	return recs, nil
}

func (db *DB) begin(ctx context.Context, job batch.JobInfo, resume bool) (recs []batch.Record, err error) {
	tx, err := db.conn.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("starting a transaction: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return nil, fmt.Errorf("reading the schema version: %w", err)
	}
	if version > schemaVersion {
		return nil, fmt.Errorf("schema version %d is newer than this program's (%d)", version, schemaVersion)
	}
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("creating the tables: %w", err)
	}
	if version < schemaVersion {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
			return nil, fmt.Errorf("setting the schema version: %w", err)
		}
	}
	if resume {
		if err := checkSameJob(ctx, tx, job); err != nil {
			return nil, err
		}
	}
	now := formatTime(time.Now())
	if resume {
		_, err = tx.ExecContext(ctx, `INSERT INTO jobs (id, name, len, spec, created, updated) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET name = excluded.name, len = excluded.len, spec = excluded.spec, updated = excluded.updated`,
			job.ID, job.Name, job.Len, job.Spec, now, now)
	} else {
		_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO jobs (id, name, len, spec, created, updated) VALUES (?, ?, ?, ?, ?, ?)`,
			job.ID, job.Name, job.Len, job.Spec, now, now)
	}
	if err != nil {
		return nil, fmt.Errorf("recording the job: %w", err)
	}
	if !resume {
		if _, err := tx.ExecContext(ctx, "DELETE FROM indices WHERE job_id = ?", job.ID); err != nil {
			return nil, fmt.Errorf("forgetting the earlier run: %w", err)
		}
	} else if recs, err = readDone(ctx, tx, job.ID); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("committing: %w", err)
	}
	return recs, nil
}

// checkSameJob returns a *batch.JobChangedError if the DB holds no run of
// job but holds runs of a job of the same name under another ID.
func checkSameJob(ctx context.Context, tx *sql.Tx, job batch.JobInfo) error {
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM jobs WHERE id = ?", job.ID).Scan(&n); err != nil {
		return fmt.Errorf("looking for the job: %w", err)
	}
	if n > 0 {
		return nil
	}
	rec := batch.JobInfo{Name: job.Name}
	err := tx.QueryRowContext(ctx, "SELECT id, len, spec FROM jobs WHERE name = ? ORDER BY updated DESC LIMIT 1", job.Name).
		Scan(&rec.ID, &rec.Len, &rec.Spec)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("looking for earlier runs of the job: %w", err)
	}
	return &batch.JobChangedError{Job: job, Recorded: rec}
}

// readDone reads the records of the indices of job that succeeded.
func readDone(ctx context.Context, tx *sql.Tx, job string) ([]batch.Record, error) {
	rows, err := tx.QueryContext(ctx, `SELECT idx, output, state, attempts, worker, started, finished
		FROM indices WHERE job_id = ? AND status = 'done' ORDER BY idx`, job)
	if err != nil {
		return nil, fmt.Errorf("reading the finished indices: %w", err)
	}
	defer rows.Close()
	var recs []batch.Record
	for rows.Next() {
		var (
			r                 = batch.Record{OK: true}
			output, state     sql.NullString
			started, finished sql.NullString
		)
		if err := rows.Scan(&r.Index, &output, &state, &r.Attempts, &r.Worker, &started, &finished); err != nil {
			return nil, fmt.Errorf("reading the finished indices: %w", err)
		}
		if output.Valid {
			r.Output = []byte(output.String)
		}
		if state.Valid {
			r.State = []byte(state.String)
		}
		if r.Started, err = parseTime(started); err != nil {
			return nil, fmt.Errorf("index %d: started: %w", r.Index, err)
		}
		if r.Finished, err = parseTime(finished); err != nil {
			return nil, fmt.Errorf("index %d: finished: %w", r.Index, err)
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the finished indices: %w", err)
	}
	return recs, nil
}

// Record queues r to be written; a later record of the same index
// replaces the earlier one. It returns at once unless QueueSize records
// are already waiting, in which case it waits for the writer to take
// some. The DB keeps r's Output and State until they are written: the
// caller must not modify them. Errors are returned by Close.
func (db *DB) Record(r batch.Record) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	switch {
	case db.closed:
		db.log.Error("checkpoint: Record after Close; not recorded", "index", r.Index)
	case db.queue == nil:
		db.setErr(db.errorf("record index %d: Record before Begin", r.Index))
	default:
		db.queue <- r
	}
}

// Close writes everything queued, stops the writer and closes the
// database. It returns the first error of the DB's life: a failed write,
// a misuse, or a failure to close. Later calls return the same.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.mu.Lock()
		db.closed = true
		if db.queue != nil {
			close(db.queue)
		}
		db.mu.Unlock()
		if db.writerDone != nil {
			<-db.writerDone
		}
		var errs []error
		if err := db.conn.Close(); err != nil {
			errs = append(errs, db.errorf("close: %w", err))
		}
		if err := db.sqlDB.Close(); err != nil {
			errs = append(errs, db.errorf("close: %w", err))
		}
		db.errMu.Lock()
		first := db.firstErr
		db.errMu.Unlock()
		if first != nil {
			db.closeErr = first
		} else {
			db.closeErr = errors.Join(errs...)
		}
	})
	return db.closeErr
}

// writer is the one goroutine that writes records: it takes everything
// queued (up to maxBatch records) and writes it in one transaction, until
// the queue is closed and drained.
func (db *DB) writer(queue <-chan batch.Record, job string) {
	defer close(db.writerDone)
	buf := make([]batch.Record, 0, min(db.cfg.maxBatch, 1024))
	for r := range queue {
		buf = append(buf[:0], r)
		if db.onTake != nil {
			db.onTake()
		}
	fill:
		for len(buf) < db.cfg.maxBatch {
			select {
			case r, ok := <-queue:
				if !ok {
					break fill
				}
				buf = append(buf, r)
			default:
				break fill
			}
		}
		if err := db.write(job, buf); err != nil {
			err = db.errorf("writing %d records (indices %d…%d): %w", len(buf), buf[0].Index, buf[len(buf)-1].Index, err)
			db.log.Error("checkpoint: write failed; these indices will run again on resume", "err", err)
			db.setErr(err)
			continue
		}
		if db.onCommit != nil {
			db.onCommit(buf)
		}
		clear(buf) // drop the references to outputs
	}
}

// write writes recs in one transaction.
func (db *DB) write(job string, recs []batch.Record) (err error) {
	ctx := context.Background() // never cancelled: what is queued is written
	tx, err := db.conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("starting a transaction: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	// Rows go in by rowsPerInsert per statement: the cost of a statement
	// through database/sql is mostly per call, not per row.
	args := make([]any, 0, rowsPerInsert*10)
	var full *sql.Stmt
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	for len(recs) > 0 {
		n := min(len(recs), rowsPerInsert)
		args = args[:0]
		for _, r := range recs[:n] {
			status := "failed"
			var errText any
			if r.OK {
				status = "done"
			} else {
				errText = r.Err
			}
			args = append(args, job, r.Index, status, nullText(r.Output), nullText(r.State), errText,
				r.Attempts, r.Worker, nullTime(r.Started), nullTime(r.Finished))
		}
		if n == rowsPerInsert {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, insertRows(n)); err != nil {
					return fmt.Errorf("preparing the insert: %w", err)
				}
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, insertRows(n), args...)
		}
		if err != nil {
			return fmt.Errorf("inserting: %w", err)
		}
		recs = recs[n:]
	}
	if _, err := tx.ExecContext(ctx, "UPDATE jobs SET updated = ? WHERE id = ?", formatTime(time.Now()), job); err != nil {
		return fmt.Errorf("updating the job: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// timeFormat is fixed-width, so that times sort as text, and SQLite's date
// functions read it (only the first three digits of the fraction count
// for them).
const timeFormat = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// nullTime stores the zero time as NULL.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return formatTime(t)
}

func parseTime(s sql.NullString) (time.Time, error) {
	if !s.Valid {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s.String)
}

// nullText stores JSON as TEXT (so that SQLite's JSON functions work on
// it), and nil as NULL.
func nullText(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}
