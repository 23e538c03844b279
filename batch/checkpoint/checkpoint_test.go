package checkpoint_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/checkpoint"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var jobA = batch.JobInfo{Name: "convert", ID: "id-a", Len: 10, Spec: `{"params":{"dir":"in"}}`}
var jobB = batch.JobInfo{Name: "convert", ID: "id-b", Len: 5, Spec: `{"params":{"dir":"other"}}`}

// testLogger logs to the test's output.
func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

func dbPath(t *testing.T) string { return filepath.Join(t.TempDir(), "ckpt.db") }

func open(t *testing.T, path string) *checkpoint.DB {
	t.Helper()
	db, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func begin(t *testing.T, db *checkpoint.DB, job batch.JobInfo, resume bool) []batch.Record {
	t.Helper()
	recs, err := db.Begin(context.Background(), job, resume)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func closeDB(t *testing.T, db *checkpoint.DB) {
	t.Helper()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// run is one run of job: Begin, the records, Close. It returns what Begin
// returned.
func run(t *testing.T, path string, job batch.JobInfo, resume bool, recs ...batch.Record) []batch.Record {
	t.Helper()
	db := open(t, path)
	got := begin(t, db, job, resume)
	for _, r := range recs {
		db.Record(r)
	}
	closeDB(t, db)
	return got
}

func done(i int) batch.Record {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	return batch.Record{Index: i, OK: true, Output: fmt.Appendf(nil, `"out/%d.bin"`, i), Attempts: 1,
		Worker: "goroutine 1", Started: t0.Add(time.Duration(i) * time.Second), Finished: t0.Add(time.Duration(i)*time.Second + 1500*time.Microsecond)}
}

func failed(i int) batch.Record {
	return batch.Record{Index: i, Err: fmt.Sprintf("index %d: boom", i), Attempts: 3, Worker: "pid 4711",
		Started: time.Unix(100, 5), Finished: time.Unix(101, 0)}
}

func indices(recs []batch.Record) []int {
	out := []int{}
	for _, r := range recs {
		out = append(out, r.Index)
	}
	return out
}

// row is a row of the indices table, read with plain SQL as a user would.
type row struct {
	Status            string
	Output, State     sql.NullString
	Error             sql.NullString
	Attempts          int
	Worker            string
	Started, Finished sql.NullString
}

func rows(t *testing.T, path, job string) map[int]row {
	t.Helper()
	sdb, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	rs, err := sdb.Query(`SELECT idx, status, output, state, error, attempts, worker, started, finished
		FROM indices WHERE job_id = ?`, job)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[int]row{}
	for rs.Next() {
		var i int
		var r row
		if err := rs.Scan(&i, &r.Status, &r.Output, &r.State, &r.Error, &r.Attempts, &r.Worker, &r.Started, &r.Finished); err != nil {
			t.Fatal(err)
		}
		out[i] = r
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	path := dbPath(t)
	withState := done(2)
	withState.State = []byte(`[{"Words":3},null]`)
	withState.Attempts = 2
	noTimes := done(4)
	noTimes.Started, noTimes.Finished = time.Time{}, time.Time{}
	local := done(5)
	loc := time.FixedZone("X", 3600)
	local.Started, local.Finished = local.Started.In(loc), local.Finished.In(loc)
	written := []batch.Record{done(0), failed(1), withState, noTimes, local}
	run(t, path, jobA, false, written...)

	got := run(t, path, jobA, true)
	want := []batch.Record{done(0), withState, noTimes, local}
	if len(got) != len(want) {
		t.Fatalf("resume returned indices %v, want %v", indices(got), indices(want))
	}
	for k := range want {
		g, w := got[k], want[k]
		if !g.Started.Equal(w.Started) || !g.Finished.Equal(w.Finished) {
			t.Errorf("index %d: times %v…%v, want %v…%v", w.Index, g.Started, g.Finished, w.Started, w.Finished)
		}
		g.Started, g.Finished, w.Started, w.Finished = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("index %d: got %+v, want %+v", w.Index, g, w)
		}
	}

	// The failed record is in the table for people to read.
	r := rows(t, path, jobA.ID)
	f := r[1]
	if f.Status != "failed" || f.Error.String != "index 1: boom" || f.Output.Valid || f.State.Valid ||
		f.Attempts != 3 || f.Worker != "pid 4711" || f.Started.String != "1970-01-01T00:01:40.000000005Z" {
		t.Errorf("failed row: %+v", f)
	}
	if d := r[0]; d.Status != "done" || d.Output.String != `"out/0.bin"` || d.Error.Valid ||
		d.Started.String != "2025-03-04T05:06:07.123456789Z" || d.Finished.String != "2025-03-04T05:06:07.124956789Z" {
		t.Errorf("done row: %+v", d)
	}
	if n := r[4]; n.Started.Valid || n.Finished.Valid {
		t.Errorf("zero times are stored as %q, %q, want NULL", n.Started.String, n.Finished.String)
	}
}

func TestFreshForgets(t *testing.T) {
	path := dbPath(t)
	run(t, path, jobA, false, done(0), done(1), failed(2))
	if got := run(t, path, jobA, false, done(3)); len(got) != 0 {
		t.Errorf("a fresh run returned %v", indices(got))
	}
	if got := indices(run(t, path, jobA, true)); !reflect.DeepEqual(got, []int{3}) {
		t.Errorf("after a fresh run, resume returned %v, want [3]", got)
	}
	if r := rows(t, path, jobA.ID); len(r) != 1 {
		t.Errorf("%d rows left, want 1", len(r))
	}
}

func TestResumeWithoutEarlierRun(t *testing.T) {
	if got := run(t, dbPath(t), jobA, true, done(0)); len(got) != 0 {
		t.Errorf("resume of a job never run returned %v", indices(got))
	}
}

func TestTwoJobs(t *testing.T) {
	path := dbPath(t)
	run(t, path, jobA, false, done(0), done(1))
	run(t, path, jobB, false, done(1), done(2), done(3))
	run(t, path, jobA, false, done(7)) // forgets A's records only
	if got := indices(run(t, path, jobB, true)); !reflect.DeepEqual(got, []int{1, 2, 3}) {
		t.Errorf("job B: %v, want [1 2 3]", got)
	}
	if got := indices(run(t, path, jobA, true)); !reflect.DeepEqual(got, []int{7}) {
		t.Errorf("job A: %v, want [7]", got)
	}
	sdb, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var name, spec string
	var n int
	if err := sdb.QueryRow("SELECT name, len, spec FROM jobs WHERE id = ?", jobB.ID).Scan(&name, &n, &spec); err != nil {
		t.Fatal(err)
	}
	if name != jobB.Name || n != jobB.Len || spec != jobB.Spec {
		t.Errorf("job row %q %d %q, want %q %d %q", name, n, spec, jobB.Name, jobB.Len, jobB.Spec)
	}
}

func TestLaterRecordReplaces(t *testing.T) {
	path := dbPath(t)
	second := done(3)
	second.Attempts = 2
	// In one run (whether or not the writer takes both in one transaction),
	// then across runs.
	run(t, path, jobA, false, failed(3), second, done(4), failed(5))
	fixed := done(5)
	fixed.Worker = "goroutine 9"
	got := run(t, path, jobA, true, fixed)
	if !reflect.DeepEqual(indices(got), []int{3, 4}) || got[0].Attempts != 2 {
		t.Fatalf("after one run: %+v", got)
	}
	got = run(t, path, jobA, true)
	if !reflect.DeepEqual(indices(got), []int{3, 4, 5}) || got[2].Worker != "goroutine 9" {
		t.Fatalf("after two runs: %+v", got)
	}
	if r := rows(t, path, jobA.ID); len(r) != 3 || r[5].Error.Valid {
		t.Errorf("rows: %+v", r)
	}
}

// Record queues: the writer takes many records per transaction, and Close
// writes every one of them.
func TestManyRecords(t *testing.T) {
	path := dbPath(t)
	db, err := checkpoint.Open(path, checkpoint.QueueSize(7))
	if err != nil {
		t.Fatal(err)
	}
	commits, written := 0, 0
	checkpoint.OnCommit(db, func(recs []batch.Record) { commits++; written += len(recs) })
	begin(t, db, jobA, false)
	const n = 2000
	for i := range n {
		db.Record(done(i))
	}
	closeDB(t, db) // waits for the writer: commits and written are safe to read
	got := run(t, path, jobA, true)
	if len(got) != n || got[0].Index != 0 || got[n-1].Index != n-1 {
		t.Fatalf("%d records, want %d", len(got), n)
	}
	if written != n {
		t.Errorf("%d records committed in %d commits, want each of the %d once", written, commits, n)
	}
	t.Logf("%d records in %d commits", n, commits)
}

// Group commit: the writer writes everything queued in one transaction,
// up to its batch size.
func TestGroupCommit(t *testing.T) {
	const n, maxBatch = 1000, 300
	path := dbPath(t)
	db := open(t, path)
	checkpoint.MaxBatch(db, maxBatch)
	var sizes []int
	checkpoint.OnCommit(db, func(recs []batch.Record) { sizes = append(sizes, len(recs)) })
	taken, release := make(chan struct{}), make(chan struct{})
	first := true
	checkpoint.OnTake(db, func() {
		if first { // hold the writer until every record is queued
			first = false
			close(taken)
			<-release
		}
	})
	begin(t, db, jobA, false)
	db.Record(done(0))
	<-taken
	for i := 1; i < n; i++ {
		db.Record(done(i)) // the queue holds them all: Record does not block
	}
	close(release)
	closeDB(t, db) // waits for the writer: sizes is safe to read
	if want := []int{300, 300, 300, 100}; !reflect.DeepEqual(sizes, want) {
		t.Errorf("%d records committed in transactions of %v records, want %v", n, sizes, want)
	}
	if got := run(t, path, jobA, true); len(got) != n {
		t.Errorf("%d records, want %d", len(got), n)
	}
}

func TestOptions(t *testing.T) {
	path := dbPath(t)
	db, err := checkpoint.Open(path, checkpoint.SyncFull(), checkpoint.Logger(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	begin(t, db, jobA, false)
	db.Record(done(0))
	closeDB(t, db)
	if db.Path() != path {
		t.Errorf("Path() = %q, want %q", db.Path(), path)
	}
	if _, err := checkpoint.Open(path, checkpoint.QueueSize(0)); err == nil || !strings.Contains(err.Error(), "QueueSize(0)") {
		t.Errorf("QueueSize(0): %v", err)
	}
}

// A path that needs escaping in a URI is still a plain path.
func TestPathWithURICharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a?b#c%20 d.db")
	run(t, path, jobA, false, done(1))
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	if got := indices(run(t, path, jobA, true)); !reflect.DeepEqual(got, []int{1}) {
		t.Errorf("got %v", got)
	}
}

// wantErr checks that err says every part of want.
func wantErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one saying %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

func TestErrors(t *testing.T) {
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		_, err := checkpoint.Open(dir)
		wantErr(t, err, "checkpoint: open "+dir, "is a directory")
	})
	t.Run("missing directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")
		_, err := checkpoint.Open(path)
		wantErr(t, err, "checkpoint: open "+path, "no such file or directory")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%v is not fs.ErrNotExist", err)
		}
	})
	t.Run("parent is a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(file, "x.db")
		_, err := checkpoint.Open(path)
		wantErr(t, err, "checkpoint: open "+path, "not a directory")
		if !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("%v is not ENOTDIR", err)
		}
	})
	t.Run("empty path", func(t *testing.T) {
		_, err := checkpoint.Open("")
		wantErr(t, err, "empty path")
	})
	t.Run("not a database", func(t *testing.T) {
		path := dbPath(t)
		if err := os.WriteFile(path, []byte(strings.Repeat("this is not SQLite\n", 500)), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := checkpoint.Open(path)
		wantErr(t, err, "checkpoint: open "+path, "not a database")
	})
	t.Run("corrupt tables", func(t *testing.T) {
		// A valid header, then garbage where the schema page is.
		path := dbPath(t)
		run(t, path, jobA, false, done(0))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := 100; i < len(b); i++ {
			b[i] = 0xa5
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		db, err := checkpoint.Open(path)
		if err != nil {
			wantErr(t, err, path)
			return
		}
		_, err = db.Begin(context.Background(), jobA, true)
		wantErr(t, err, "checkpoint "+path, "begin job \"convert\"")
		if cerr := db.Close(); cerr != nil {
			t.Errorf("Close after a failed Begin: %v", cerr)
		}
	})
	t.Run("newer schema", func(t *testing.T) {
		path := dbPath(t)
		sdb, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sdb.Exec("PRAGMA user_version = 99"); err != nil {
			t.Fatal(err)
		}
		sdb.Close()
		db := open(t, path)
		_, err = db.Begin(context.Background(), jobA, true)
		wantErr(t, err, "checkpoint "+path, "schema version 99")
		closeDB(t, db)
	})
	t.Run("write fails", func(t *testing.T) {
		path := dbPath(t)
		db, err := checkpoint.Open(path, checkpoint.Logger(testLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		begin(t, db, jobA, false)
		// Someone drops the table under the writer.
		sdb, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sdb.Exec("DROP TABLE indices"); err != nil {
			t.Fatal(err)
		}
		sdb.Close()
		db.Record(done(3))
		err = db.Close()
		wantErr(t, err, "checkpoint "+path, "writing 1 records (indices 3…3)", "no such table")
		if again := db.Close(); again != err {
			t.Errorf("second Close: %v, want the same error", again)
		}
	})
	t.Run("record before begin", func(t *testing.T) {
		path := dbPath(t)
		db := open(t, path)
		db.Record(done(2))
		wantErr(t, db.Close(), "checkpoint "+path, "record index 2: Record before Begin")
	})
	t.Run("begin twice", func(t *testing.T) {
		path := dbPath(t)
		db := open(t, path)
		begin(t, db, jobA, false)
		_, err := db.Begin(context.Background(), jobB, false)
		wantErr(t, err, "checkpoint "+path, "Begin was already called")
		closeDB(t, db)
	})
	t.Run("begin after close", func(t *testing.T) {
		db, err := checkpoint.Open(dbPath(t), checkpoint.Logger(testLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		closeDB(t, db)
		_, err = db.Begin(context.Background(), jobA, false)
		wantErr(t, err, "closed")
		db.Record(done(1)) // logged and dropped, no panic
	})
	t.Run("empty job ID", func(t *testing.T) {
		db := open(t, dbPath(t))
		defer closeDB(t, db)
		_, err := db.Begin(context.Background(), batch.JobInfo{Name: "x"}, false)
		wantErr(t, err, "empty job ID")
	})
	t.Run("cancelled context", func(t *testing.T) {
		db := open(t, dbPath(t))
		defer closeDB(t, db)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := db.Begin(ctx, jobA, false)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Begin with a cancelled context: %v", err)
		}
	})
}
