// Package readme holds the Go code blocks of the repository's README.md
// and of package docs as code that compiles: each block is a region of a
// file here, between "// readme:begin NAME" and "// readme:end", and the
// README marks the block with "<!-- code: NAME -->" on the line before it.
// Lines ending in "// readme:hide" compile but are not shown (they use
// variables a snippet only declares). TestBlocksMatch fails when a block
// and its region differ; `go test ./internal/readme -update` rewrites the
// blocks from the regions.
package readme
