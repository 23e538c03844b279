package checkpoint_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/checkpoint"
)

// helperEnv names the database the helper process writes to.
const helperEnv = "FERRY_CHECKPOINT_HELPER_DB"

var killJob = batch.JobInfo{Name: "kill", ID: "kill-id", Len: 1 << 30, Spec: "{}"}

// killRecords returns what the helper records for index i, in order:
// every fifth index fails once before it succeeds, and outputs vary in
// size, some spilling over several pages.
func killRecords(i int) []batch.Record {
	t := time.Unix(1_700_000_000, int64(i)).UTC()
	pad := strings.Repeat("x", (i*37)%300)
	if i%13 == 0 {
		pad = strings.Repeat("y", 6000)
	}
	ok := batch.Record{Index: i, OK: true, Output: fmt.Appendf(nil, `{"i":%d,"pad":%q}`, i, pad),
		State: fmt.Appendf(nil, `[%d]`, i), Attempts: 1, Worker: "pid " + strconv.Itoa(i%4), Started: t, Finished: t.Add(time.Millisecond)}
	if i%5 != 0 {
		return []batch.Record{ok}
	}
	ok.Attempts = 2
	return []batch.Record{{Index: i, Err: fmt.Sprintf("index %d: first attempt", i), Attempts: 1,
		Worker: ok.Worker, Started: t, Finished: t}, ok}
}

// TestHelperProcess is the child of TestKill (it does nothing in a normal
// run): it records indices 0, 1, 2, … as fast as it can and prints the
// last index of every transaction once it has committed, until it is
// killed.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		return
	}
	db, err := checkpoint.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	checkpoint.OnCommit(db, func(recs []batch.Record) {
		if _, err := fmt.Printf("committed %d\n", recs[len(recs)-1].Index); err != nil {
			os.Exit(3) // the parent is gone
		}
	})
	if _, err := db.Begin(context.Background(), killJob, false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := 0; ; i++ {
		for _, r := range killRecords(i) {
			db.Record(r)
		}
	}
}

// TestKill kills a process that is writing a checkpoint (SIGKILL, at
// whatever point it is at) and checks that the database is intact, holds
// every transaction the process saw committed and nothing partial, and
// that a resumed run completes it.
func TestKill(t *testing.T) {
	path := dbPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	cmd.SysProcAttr = helperProcAttr()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	const killAfter = 10000 // the WAL is checkpointed into the database on the way (every 1000 pages)
	committed, killed := -1, false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "committed ")
		if !ok {
			continue
		}
		i, err := strconv.Atoi(line)
		if err != nil {
			t.Fatalf("child printed %q", sc.Text())
		}
		committed = i
		if committed >= killAfter && !killed {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
			// Read on to the end: what the child printed before it died
			// was committed too.
		}
	}
	err = cmd.Wait()
	if !endedByKill(err) {
		t.Fatalf("child ended with %v, want killed; stderr:\n%s", err, stderr.String())
	}
	if !killed {
		t.Fatalf("child died before index %d was committed (last %d); stderr:\n%s", killAfter, committed, stderr.String())
	}

	// Before anything opens it again: the WAL was copied into the database
	// file on the way, so recovery sees both a checkpointed database and a
	// WAL cut anywhere.
	if fi, err := os.Stat(path); err != nil || fi.Size() < 1<<20 {
		t.Fatalf("database file before recovery: %v, %v; want ≥ 1 MiB (a WAL checkpoint)", fi, err)
	}
	sdb, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	var integrity string
	if err := sdb.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil || integrity != "ok" {
		t.Fatalf("integrity_check: %q, %v", integrity, err)
	}
	// The writer commits in the order of Record: what is there is a
	// prefix 0…m-1 of the indices, and its last index alone may have only
	// its first record.
	var m, maxIdx int
	if err := sdb.QueryRow("SELECT count(*), coalesce(max(idx), -1) FROM indices WHERE job_id = ?", killJob.ID).Scan(&m, &maxIdx); err != nil {
		t.Fatal(err)
	}
	if maxIdx != m-1 {
		t.Fatalf("%d rows, highest index %d: not a prefix", m, maxIdx)
	}
	if m <= committed {
		t.Fatalf("%d indices recorded, but the child committed index %d", m, committed)
	}
	t.Logf("child killed after committing index %d (at least); %d indices in the database", committed, m)
	var lastFailed int
	if err := sdb.QueryRow("SELECT count(*) FROM indices WHERE job_id = ? AND status = 'failed'", killJob.ID).Scan(&lastFailed); err != nil {
		t.Fatal(err)
	}
	if lastFailed > 1 {
		t.Fatalf("%d failed rows; only the last index may be", lastFailed)
	}
	sdb.Close()

	// Every record resumed is whole, and the run completes.
	db := open(t, path)
	recs := begin(t, db, killJob, true)
	if len(recs) != m-lastFailed {
		t.Fatalf("resume returned %d records, want %d", len(recs), m-lastFailed)
	}
	for k, r := range recs {
		rs := killRecords(k)
		want := rs[len(rs)-1]
		if !r.Started.Equal(want.Started) || !r.Finished.Equal(want.Finished) {
			t.Fatalf("index %d: times %v…%v, want %v…%v", k, r.Started, r.Finished, want.Started, want.Finished)
		}
		r.Started, r.Finished, want.Started, want.Finished = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(r, want) || !json.Valid(r.Output) {
			t.Fatalf("index %d: got %+v, want %+v", k, r, want)
		}
	}
	const total = killAfter * 2
	for i := len(recs); i < total; i++ {
		rs := killRecords(i)
		db.Record(rs[len(rs)-1])
	}
	closeDB(t, db)
	db = open(t, path)
	recs = begin(t, db, killJob, true)
	closeDB(t, db)
	if len(recs) < total {
		t.Fatalf("after the resumed run, %d records, want ≥ %d", len(recs), total)
	}
	for k, r := range recs[:total] {
		if r.Index != k || !r.OK {
			t.Fatalf("record %d: %+v", k, r)
		}
	}
}

// endedByKill reports whether err is the end of a process that
// Process.Kill ended: SIGKILL, or on Windows (which has no signals) any
// failed exit.
func endedByKill(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal() == syscall.SIGKILL
	}
	return runtime.GOOS == "windows"
}
