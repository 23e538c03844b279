package proc

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/ferrypipe/ferry/shm"
)

// envConstants lists a worker's shared constants: "name=fd,name=fd", each
// name query-escaped (so that it may hold '=' and ','), each fd inherited.
const envConstants = "FERRY_WORKER_CONSTANTS"

// Constants hands shared constants (made with shm.Share) to every worker
// process of an Iterate, RunPipeline or Pool, including the workers a Pool
// starts to replace others. Each worker inherits a duplicate of each
// constant's memfd and maps it read-only, under the constant's name, before
// its initializers run, so that an initializer or any worker code finds it
// with shm.Lookup:
//
//	weights, err := shm.Share("weights", data)
//	if err != nil { ... }
//	defer weights.Close() // after the pool
//	pool, err := proc.NewPool(ctx, Score, proc.Constants(weights))
//
//	// in the worker:
//	w, ok := shm.Lookup("weights")
//
// The bytes exist once in memory, however many workers map them, and no
// process can change them. The caller keeps the constants and closes them
// after the workers are started (a Pool may start replacements at any
// time until Close). A worker that cannot map a constant (for example
// because it already registered a constant of that name itself) fails to
// start with an error that names it.
func Constants(cs ...*shm.Constant) Option {
	return option(func(o *options) { o.constants = append(o.constants, cs...) })
}

// constantFiles duplicates the fds of cs for a worker in which they will
// be fds first, first+1, …, and returns the files to put in its ExtraFiles
// (the caller closes them once the worker is started) and the value of
// envConstants.
func constantFiles(cs []*shm.Constant, first int) (files []*os.File, env string, err error) {
	seen := make(map[string]bool, len(cs))
	var b strings.Builder
	fail := func(e error) ([]*os.File, string, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, "", e
	}
	for i, c := range cs {
		if c == nil {
			return fail(fmt.Errorf("proc: Constants: constant %d is nil", i))
		}
		name := c.Name()
		if seen[name] {
			return fail(fmt.Errorf("proc: Constants: two constants are named %q", name))
		}
		seen[name] = true
		if !isOpen(c) {
			return fail(fmt.Errorf("proc: Constants: shared constant %q is closed", name))
		}
		// A duplicate, so that the constant's own fd stays the caller's.
		fd, err := dupFD(c.FD(), 0)
		if err != nil {
			return fail(fmt.Errorf("proc: duplicating the fd of shared constant %q: %w", name, err))
		}
		files = append(files, os.NewFile(uintptr(fd), "ferry-constant:"+name))
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(url.QueryEscape(name))
		b.WriteByte('=')
		b.WriteString(strconv.Itoa(first + i))
	}
	return files, b.String(), nil
}

// isOpen reports whether c is still the constant registered under its
// name: once closed it is not, and its fd number may belong to another
// file.
func isOpen(c *shm.Constant) bool {
	reg, ok := shm.Lookup(c.Name())
	return ok && reg == c
}

// checkShare checks the constants given to Share: none nil, none closed,
// none named like one in names (what owner, "the pool" or "the worker",
// has already) or like another of cs.
func checkShare(owner string, names map[string]bool, cs []*shm.Constant) error {
	seen := maps.Clone(names)
	for i, c := range cs {
		switch {
		case c == nil:
			return fmt.Errorf("constant %d is nil", i)
		case seen[c.Name()]:
			return fmt.Errorf("%s has a constant named %q already", owner, c.Name())
		case !isOpen(c):
			return fmt.Errorf("shared constant %q is closed", c.Name())
		}
		seen[c.Name()] = true
	}
	return nil
}

// openConstants maps the shared constants the parent passed to this worker
// (v is the value of envConstants), before Init and its initializers, and
// closes the inherited fds (each Constant keeps its own duplicate). They
// stay mapped, and registered for shm.Lookup, for the worker's life.
func openConstants(v string) ([]*shm.Constant, error) {
	if v == "" {
		return nil, nil
	}
	var cs []*shm.Constant
	for _, entry := range strings.Split(v, ",") {
		qname, sfd, ok := strings.Cut(entry, "=")
		name, nerr := url.QueryUnescape(qname)
		fd, ferr := strconv.Atoi(sfd)
		if !ok || nerr != nil || ferr != nil || fd <= workerFD || name == "" {
			return cs, fmt.Errorf("bad %s entry %q", envConstants, entry)
		}
		c, err := shm.OpenConstant(name, fd)
		closeFD(fd) // OpenConstant keeps its own duplicate
		if err != nil {
			return cs, fmt.Errorf("mapping shared constant %q (fd %d): %w", name, fd, err)
		}
		cs = append(cs, c)
	}
	return cs, nil
}
