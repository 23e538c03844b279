package demo

import (
	"encoding/json"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// StatsJSON is the summary of a run for scripts (`ferry demo
// --stats-json`): counts, times in seconds, and the final stats of the
// pipeline, the load pool and the arena as ferry reports them (durations
// in nanoseconds there).
type StatsJSON struct {
	Samples       int            `json:"samples"`
	EpochsRun     int            `json:"epochs_run"`
	EpochsAsked   int            `json:"epochs_asked"`
	Items         int64          `json:"items"`
	Batches       int64          `json:"batches"`
	Failed        int64          `json:"failed"`
	FailedSamples []int          `json:"failed_samples"`
	WallSeconds   float64        `json:"wall_seconds"`
	ItemsPerSec   float64        `json:"items_per_sec"`
	Epochs        []EpochJSON    `json:"epochs"`
	Pipeline      pipeline.Stats `json:"pipeline"`
	Pool          proc.PoolStats `json:"pool"`
	Arena         shm.Stats      `json:"arena"`
}

// EpochJSON is one epoch of StatsJSON.
type EpochJSON struct {
	Epoch       int     `json:"epoch"`
	Items       int     `json:"items"`
	Failed      int     `json:"failed"`
	Seconds     float64 `json:"seconds"`
	ItemsPerSec float64 `json:"items_per_sec"`
}

// JSON returns s as StatsJSON, indented.
func (s Summary) JSON() ([]byte, error) {
	out := StatsJSON{Samples: s.Config.Samples, EpochsRun: len(s.Epochs), EpochsAsked: s.Config.Epochs,
		Items: s.Items, Batches: s.Batches, Failed: s.Failed, FailedSamples: s.FailedSamples,
		WallSeconds: s.Wall.Seconds(), ItemsPerSec: s.ItemsPerSec(),
		Epochs: []EpochJSON{}, Pipeline: s.Stats, Pool: s.Pool, Arena: s.Arena}
	if out.FailedSamples == nil {
		out.FailedSamples = []int{}
	}
	for _, e := range s.Epochs {
		out.Epochs = append(out.Epochs, EpochJSON{Epoch: e.Epoch, Items: e.Items, Failed: e.Failed,
			Seconds: e.Duration.Seconds(), ItemsPerSec: e.ItemsPerSec()})
	}
	return json.MarshalIndent(out, "", "  ")
}
