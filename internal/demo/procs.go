package demo

import "github.com/ferrypipe/ferry/proc"

// LoadBatchFunc is LoadBatch registered to run in worker processes: the
// demo runs it in a proc.Pool of them, with a shared-memory arena through
// which each batch's tensors (Batch.Data) come back to the parent. The
// samples and the rest of the batch go through the built-in codec (CBOR),
// whose cost is small next to a batch's decoding.
var LoadBatchFunc = proc.Func("demo.load-batch", LoadBatch)
