package pipeline

import (
	"errors"
	"fmt"
)

// Route sends each item down one of several branches, chosen by router (an
// index into branches), and merges the branches' outputs back into one
// stream in arrival order. Each branch is a function that builds a chain of
// stages on the stage it is given. A router index out of range, or a panic
// in router, fails the item.
func Route[T, Out any](up *Stage[T], router func(T) int, branches []func(*Stage[T]) *Stage[Out], opts ...StageOption) *Stage[Out] {
	if up == nil || router == nil || len(branches) == 0 {
		return broken[Out](errors.New("pipeline: Route needs an input stage, a router and at least one branch"))
	}
	o := stageOpts(opts)
	return &Stage[Out]{build: func(r *run) *edge[Out] {
		name := r.stageName(o, "route")
		in := input(r, up, name)
		st := newStats(r, name, stageOptions{concurrency: 1, budget: o.budget})
		// One queue per branch, fed by the router goroutine.
		heads := make([]*edge[T], len(branches))
		outs := make([]*Stage[Out], len(branches))
		for i, b := range branches {
			heads[i] = newEdge[T](r, fmt.Sprintf("%s[%d]", name, i), o.buffer)
			head := heads[i]
			outs[i] = b(&Stage[T]{build: func(*run) *edge[T] { return head }})
			if outs[i] == nil {
				r.buildError(fmt.Errorf("pipeline: route %q: branch %d built a nil stage", name, i))
				outs[i] = broken[Out](errors.New("nil branch"))
			}
		}
		r.goStage(name, func() {
			senders := make([]*sender[T], len(heads))
			for i, h := range heads {
				senders[i] = newSender(h)
			}
			flushAll := func() bool {
				for _, s := range senders {
					if !s.flush(r.ctx) {
						return false
					}
				}
				return true
			}
			for {
				chunk, ok := in.recv(r.ctx)
				if !ok {
					return
				}
				clock := now()
				for _, env := range chunk {
					if env.end {
						for _, s := range senders {
							if !s.add(r.ctx, env, 0) {
								return
							}
						}
						continue
					}
					if env.ep.aborted.Load() {
						continue
					}
					var k int
					err := safely(r, func() error { k = router(env.v); return nil })
					end := now()
					st.durations.Record(end - clock)
					clock = end
					st.invocations.Add(1)
					if err == nil && (k < 0 || k >= len(senders)) {
						err = fmt.Errorf("router chose branch %d of %d", k, len(senders))
					}
					if err != nil {
						r.itemFailed(st, env.ep, env.index, err)
						continue
					}
					if !senders[k].add(r.ctx, env, 0) {
						return
					}
				}
				if len(in.ch) == 0 && !flushAll() {
					return
				}
			}
		})
		return mergeStage(name+".merge", []StageOption{Buffer(o.buffer)}, outs).build(r)
	}}
}
