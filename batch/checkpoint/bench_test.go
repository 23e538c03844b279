package checkpoint_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/checkpoint"
)

// BenchmarkRecord measures the sustained rate of Record, from the first
// call to the end of Close (everything committed), with records shaped
// like those of a batch job that writes one file per index.
func BenchmarkRecord(b *testing.B) {
	db, err := checkpoint.Open(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.Begin(context.Background(), batch.JobInfo{Name: "bench", ID: "bench-id", Len: b.N, Spec: "{}"}, false); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	outs := make([][]byte, 1024)
	for i := range outs {
		outs[i] = []byte(`{"path":"out/part-` + strconv.Itoa(i) + `.bin","bytes":123456}`)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		db.Record(batch.Record{Index: i, OK: true, Output: outs[i%len(outs)], Attempts: 1, Worker: "pid 4711", Started: now, Finished: now})
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
