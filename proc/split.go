package proc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"unsafe"

	"github.com/ferrypipe/ferry/shm"
)

// DefaultArenaThreshold is the size from which a slice travels through
// the arena rather than through the codec (see ArenaThreshold).
const DefaultArenaThreshold = 64 << 10

// A splitter sends the large parts of a value of type T through the
// arena and the rest through T's codec, so that a type holding an image
// or a tensor does not have to be split by hand. The large parts are:
//
//   - the value itself, if T is a slice of fixed-size numbers ([]byte,
//     []float32, …);
//   - the exported fields of such slice types, if T is a struct or a
//     pointer to one;
//   - a *shm.Buffer, as the value or in an exported field, whatever its
//     size: it is given away (shm.Buffer.Send: its segment changes hands
//     when the sender held the last reference, otherwise it is copied), and
//     the receiver gets a Buffer that holds the segment, without a copy.
//
// A part of at least the threshold is copied into a segment (one memcpy)
// and replaced by its shm.Ref; the receiver copies it out into memory of
// its own (one memcpy) and releases the segment at once, so the value it
// gets is an ordinary Go value that it owns. Zero-copy consumption is
// IterateShared's job.
//
// Its message is: a uvarint count of parts, then per part a uvarint
// position (0: the value itself, i+1: field i) and a uvarint-prefixed
// shm.Ref, then the codec's encoding of the value with those parts nil
// (nothing, when the value itself went through the arena).
type splitter[T any] struct {
	codec Codec[T]
	once  sync.Once
	plan  splitPlan
}

// splitPlan is what can be split off a type.
type splitPlan struct {
	self    bool         // T is a numeric slice
	bufSelf bool         // T is *shm.Buffer
	ptr     bool         // T is a pointer to a struct
	st      reflect.Type // the struct type
	fields  []int        // its numeric-slice fields
	bufs    []int        // its *shm.Buffer fields
}

func (p *splitPlan) empty() bool {
	return !p.self && !p.bufSelf && len(p.fields) == 0 && len(p.bufs) == 0
}

var bufferType = reflect.TypeFor[*shm.Buffer]()

func newSplitter[T any](c Codec[T]) *splitter[T] { return &splitter[T]{codec: c} }

func (s *splitter[T]) getPlan() *splitPlan {
	s.once.Do(func() {
		t := reflect.TypeFor[T]()
		if numericSlice(t) {
			s.plan.self = true
			return
		}
		if t == bufferType {
			s.plan.bufSelf = true
			return
		}
		if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
			s.plan.ptr, t = true, t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		s.plan.st = t
		for i := range t.NumField() {
			switch f := t.Field(i); {
			case !f.IsExported() || skipped(f):
			case numericSlice(f.Type):
				s.plan.fields = append(s.plan.fields, i)
			case f.Type == bufferType:
				s.plan.bufs = append(s.plan.bufs, i)
			}
		}
	})
	return &s.plan
}

// skipped reports whether the codec does not send field f, by the user's
// choice (a "-" tag): the arena must not send it either.
func skipped(f reflect.StructField) bool {
	if tag, ok := f.Tag.Lookup("cbor"); ok {
		return tag == "-"
	}
	return f.Tag.Get("json") == "-"
}

// numericSlice reports whether t is a slice of fixed-size numbers, whose
// memory can be copied as it is between two processes of one machine.
func numericSlice(t reflect.Type) bool {
	if t.Kind() != reflect.Slice {
		return false
	}
	switch t.Elem().Kind() {
	case reflect.Uint8, reflect.Int8, reflect.Uint16, reflect.Int16, reflect.Uint32, reflect.Int32,
		reflect.Uint64, reflect.Int64, reflect.Int, reflect.Uint, reflect.Float32, reflect.Float64,
		reflect.Complex64, reflect.Complex128:
		return true
	}
	return false
}

// sliceBytes is the memory of a numeric slice.
func sliceBytes(v reflect.Value) []byte {
	n := v.Len() * int(v.Type().Elem().Size())
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(v.UnsafePointer()), n)
}

// encode appends the message of v to dst, publishing its large parts in
// arena. On success the caller owns refs: it discards them if the
// message is not delivered. On failure nothing stays published.
func (s *splitter[T]) encode(ctx context.Context, arena *shm.SegmentPool, threshold int, dst []byte, v T) (msg []byte, refs []shm.Ref, err error) {
	var sent []*shm.Buffer // given away already
	plan := s.getPlan()
	defer func() {
		if err != nil {
			discardRefs(arena, refs)
			refs = nil
			s.giveAway(v, sent...) // a Buffer not yet sent is given away all the same
		}
	}()
	publish := func(pos int, b []byte, buf *shm.Buffer) error {
		var ref shm.Ref
		var err error
		if buf != nil {
			if ref, err = buf.Send(ctx, arena); err == nil {
				sent = append(sent, buf)
			}
		} else {
			ref, err = arena.PublishCopy(ctx, b)
		}
		if err != nil {
			return err
		}
		refs = append(refs, ref)
		dst = binary.AppendUvarint(dst, uint64(pos))
		dst = binary.AppendUvarint(dst, uint64(ref.EncodedLen()))
		dst = ref.Append(dst)
		return nil
	}
	rv := reflect.ValueOf(&v).Elem()
	switch {
	case plan.self && rv.Len()*int(rv.Type().Elem().Size()) >= threshold:
		dst = binary.AppendUvarint(dst, 1)
		if err := publish(0, sliceBytes(rv), nil); err != nil {
			return dst, nil, err
		}
		return dst, refs, nil
	case plan.bufSelf && !rv.IsNil():
		dst = binary.AppendUvarint(dst, 1)
		if err := publish(0, nil, rv.Interface().(*shm.Buffer)); err != nil {
			return dst, nil, err
		}
		return dst, refs, nil
	case (len(plan.fields) > 0 || len(plan.bufs) > 0) && !(plan.ptr && rv.IsNil()):
		sv := rv
		if plan.ptr {
			sv = rv.Elem()
		}
		var big []int
		for _, i := range plan.fields {
			if f := sv.Field(i); f.Len()*int(f.Type().Elem().Size()) >= threshold {
				big = append(big, i)
			}
		}
		for _, i := range plan.bufs {
			if !sv.Field(i).IsNil() {
				big = append(big, i)
			}
		}
		if len(big) == 0 {
			break
		}
		dst = binary.AppendUvarint(dst, uint64(len(big)))
		rest := reflect.New(plan.st).Elem() // a shallow copy without the parts
		rest.Set(sv)
		for _, i := range big {
			var err error
			if f := sv.Field(i); f.Type() == bufferType {
				err = publish(i+1, nil, f.Interface().(*shm.Buffer))
			} else {
				err = publish(i+1, sliceBytes(f), nil)
			}
			if err != nil {
				return dst, refs, fmt.Errorf("field %s: %w", plan.st.Field(i).Name, err)
			}
			rest.Field(i).SetZero()
		}
		if plan.ptr {
			v = rest.Addr().Interface().(T)
		} else {
			v = rest.Interface().(T)
		}
		dst, err = s.codec.Append(dst, v)
		return dst, refs, err
	}
	dst = binary.AppendUvarint(dst, 0)
	dst, err = s.codec.Append(dst, v)
	return dst, nil, err
}

// splitMsg is a received message whose parts have been viewed: by the
// reading goroutine, so that the sender's death, which reclaims what it
// still owns, cannot free them first.
type splitMsg struct {
	pos   []int
	views []*shm.View
	body  []byte
}

// viewSplit parses a message and views its parts in arena. If a part
// cannot be viewed, the others are released or discarded: the message is
// lost as a whole, and none of its segments with it.
func viewSplit(arena *shm.SegmentPool, b []byte) (m splitMsg, err error) {
	malformed := errors.New("proc: a malformed shared-memory message")
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return m, malformed
	}
	b = b[k:]
	refs := make([]shm.Ref, 0, n)
	for range n {
		pos, k := binary.Uvarint(b)
		if k <= 0 {
			return m, malformed
		}
		b = b[k:]
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return m, malformed
		}
		ref, err := shm.ParseRef(b[k : k+int(l)])
		if err != nil {
			return m, fmt.Errorf("proc: a shared-memory message: %w", err)
		}
		b = b[k+int(l):]
		m.pos = append(m.pos, int(pos))
		refs = append(refs, ref)
	}
	if arena == nil && n > 0 {
		return splitMsg{}, errors.New("proc: a message with parts in shared memory, but no arena")
	}
	for i, ref := range refs {
		view, err := arena.View(ref)
		if err != nil {
			m.release()
			discardRefs(arena, refs[i+1:])
			return splitMsg{}, fmt.Errorf("proc: viewing a part in shared memory: %w", err)
		}
		m.views = append(m.views, view)
	}
	m.body = b
	return m, nil
}

// release releases the views of m (but those a Buffer took over).
func (m *splitMsg) release() {
	for _, v := range m.views {
		if v != nil {
			v.Release()
		}
	}
	m.views = nil
}

// decode turns m into a value of its own memory, and releases m's views.
func (s *splitter[T]) decode(m *splitMsg) (v T, err error) {
	defer m.release()
	plan := s.getPlan()
	if len(m.pos) == 1 && m.pos[0] == 0 {
		switch {
		case plan.bufSelf:
			buf := shm.ViewBuffer(m.views[0])
			m.views[0] = nil // the Buffer's now
			return any(buf).(T), nil
		case !plan.self:
			return v, fmt.Errorf("proc: %T cannot be received whole from shared memory", v)
		}
		rv := reflect.ValueOf(&v).Elem()
		if err := fill(rv, m.views[0].Bytes()); err != nil {
			return v, err
		}
		return v, nil
	}
	if v, err = s.codec.Decode(m.body); err != nil || len(m.pos) == 0 {
		return v, err
	}
	sv := reflect.ValueOf(&v).Elem()
	if plan.ptr {
		if sv.IsNil() {
			return v, fmt.Errorf("proc: decoding %T: a nil value with parts in shared memory", v)
		}
		sv = sv.Elem()
	}
	var bufs []*shm.Buffer
	for j, pos := range m.pos {
		i := pos - 1
		if i < 0 || plan.st == nil || i >= plan.st.NumField() {
			releaseAll(bufs)
			return v, fmt.Errorf("proc: decoding %T: no field at position %d", v, pos)
		}
		switch ft := plan.st.Field(i).Type; {
		case !slices.Contains(plan.bufs, i) && !slices.Contains(plan.fields, i):
			releaseAll(bufs)
			return v, fmt.Errorf("proc: decoding %T: field %d is not sent through shared memory", v, i)
		case ft == bufferType:
			buf := shm.ViewBuffer(m.views[j])
			m.views[j] = nil // the Buffer's now
			bufs = append(bufs, buf)
			sv.Field(i).Set(reflect.ValueOf(buf))
		case numericSlice(ft):
			if err := fill(sv.Field(i), m.views[j].Bytes()); err != nil {
				releaseAll(bufs)
				return v, fmt.Errorf("field %s: %w", plan.st.Field(i).Name, err)
			}
		default:
			releaseAll(bufs)
			return v, fmt.Errorf("proc: decoding %T: no numeric slice or *shm.Buffer field at position %d", v, pos)
		}
	}
	return v, nil
}

func releaseAll(bufs []*shm.Buffer) {
	for _, b := range bufs {
		b.Release()
	}
}

// giveAway releases the *shm.Buffer parts of v once v went through the
// codec, not the arena, or failed to go: a Buffer sent is given away,
// however it travels and whether it arrives or not (but those in sent,
// which are gone already).
func (s *splitter[T]) giveAway(v T, sent ...*shm.Buffer) {
	s.eachBuffer(v, func(b *shm.Buffer) {
		if !slices.Contains(sent, b) {
			b.Release()
		}
	})
}

// eachBuffer calls fn with each *shm.Buffer part of v.
func (s *splitter[T]) eachBuffer(v T, fn func(*shm.Buffer)) {
	plan := s.getPlan()
	if !plan.bufSelf && len(plan.bufs) == 0 {
		return
	}
	call := func(b *shm.Buffer) {
		if b != nil {
			fn(b)
		}
	}
	rv := reflect.ValueOf(&v).Elem()
	if plan.bufSelf {
		call(rv.Interface().(*shm.Buffer))
		return
	}
	if plan.ptr {
		if rv.IsNil() {
			return
		}
		rv = rv.Elem()
	}
	for _, i := range plan.bufs {
		call(rv.Field(i).Interface().(*shm.Buffer))
	}
}

// fill sets the numeric slice dst to a copy of b.
func fill(dst reflect.Value, b []byte) error {
	size := int(dst.Type().Elem().Size())
	if len(b)%size != 0 {
		return fmt.Errorf("proc: %d bytes in shared memory are not a whole number of %s", len(b), dst.Type().Elem())
	}
	s := reflect.MakeSlice(dst.Type(), len(b)/size, len(b)/size)
	copy(sliceBytes(s), b)
	dst.Set(s)
	return nil
}

// discardRefs frees the segments of refs that were not delivered, or that
// the receiver never viewed. One it viewed is its own (it may keep a
// shm.Buffer of it), and reclaimed if it dies.
func discardRefs(arena *shm.SegmentPool, refs []shm.Ref) {
	for _, ref := range refs {
		_ = arena.Withdraw(ref)
	}
}
