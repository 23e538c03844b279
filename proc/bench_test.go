package proc_test

import (
	"testing"

	"github.com/ferrypipe/ferry/proc"
)

func BenchmarkIterateSmall(b *testing.B) {
	it, err := proc.Iterate(b.Context(), count, b.N)
	if err != nil {
		b.Fatal(err)
	}
	defer it.Close()
	b.ResetTimer()
	for _, err := range it.All(b.Context()) {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}
