package readme

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the README's code blocks (and package docs' examples) from the regions")

// root is the repository's root, from this package's directory.
const root = "../.."

// docBlocks are the package docs whose first code block is a region.
var docBlocks = map[string]string{"pipeline/doc.go": "pipeline-doc"}

// regions reads every "// readme:begin NAME" … "// readme:end" region of
// the Go files under this directory: its lines, less the hidden ones
// ("// readme:hide" hides itself and the line after it), less the
// indentation they share.
func regions(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var name string
		var lines []string
		hide := false
		for i, line := range strings.Split(string(data), "\n") {
			trimmed := strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(trimmed, "// readme:begin "):
				if name != "" {
					return fmt.Errorf("%s:%d: a region inside region %q", path, i+1, name)
				}
				name, lines = strings.TrimPrefix(trimmed, "// readme:begin "), nil
				if _, dup := out[name]; dup {
					return fmt.Errorf("%s:%d: a second region %q", path, i+1, name)
				}
			case trimmed == "// readme:end":
				if name == "" {
					return fmt.Errorf("%s:%d: an end outside any region", path, i+1)
				}
				out[name] = dedent(lines)
				name = ""
			case name == "":
			case trimmed == "// readme:hide":
				hide = true
			case hide:
				hide = false
			default:
				lines = append(lines, line)
			}
		}
		if name != "" {
			return fmt.Errorf("%s: region %q has no end", path, name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dedent removes the leading tabs every non-blank line has, and blank
// lines at either end.
func dedent(lines []string) []string {
	for len(lines) > 0 && strings.TrimSpace(lines[0]) == "" {
		lines = lines[1:]
	}
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	common := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, "\t"))
		if common < 0 || n < common {
			common = n
		}
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		if strings.TrimSpace(l) != "" {
			out[i] = strings.TrimRight(l[common:], " \t")
		}
	}
	return out
}

var marker = regexp.MustCompile(`^<!-- code: (\S+) -->$`)

// TestBlocksMatch: every Go code block of README.md is marked with the
// region it shows and is that region exactly, so that it compiles; every
// region is shown; the package docs' examples are their regions too.
func TestBlocksMatch(t *testing.T) {
	regs := regions(t)
	used := map[string]bool{}

	path := filepath.Join(root, "README.md")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var out []string
	for i := 0; i < len(lines); i++ {
		out = append(out, lines[i])
		if lines[i] != "```go" {
			continue
		}
		end := i + 1
		for end < len(lines) && lines[end] != "```" {
			end++
		}
		block := lines[i+1 : end]
		m := []string(nil)
		if i > 0 {
			m = marker.FindStringSubmatch(lines[i-1])
		}
		switch {
		case m == nil:
			t.Errorf("README.md:%d: a Go block without a <!-- code: NAME --> line before it (see internal/readme)", i+1)
		case regs[m[1]] == nil:
			t.Errorf("README.md:%d: no region %q in internal/readme", i+1, m[1])
		default:
			used[m[1]] = true
			if *update {
				block = regs[m[1]]
			} else if !slices.Equal(block, regs[m[1]]) {
				t.Errorf("README.md:%d: the block differs from region %q (go test ./internal/readme -update rewrites it):\n%s", i+1, m[1], diff(block, regs[m[1]]))
			}
		}
		out = append(out, block...)
		out = append(out, "```")
		i = end
	}
	if *update {
		if err := os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	for file, name := range docBlocks {
		used[name] = true
		checkDocBlock(t, filepath.Join(root, file), regs[name])
	}
	for name := range regs {
		if !used[name] {
			t.Errorf("region %q is shown nowhere", name)
		}
	}
}

// checkDocBlock compares the first code block ("//\t" lines) of the doc
// comment in the Go file at path with want.
func checkDocBlock(t *testing.T, path string, want []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "//\t") })
	if start < 0 {
		t.Fatalf("%s: no code block in its doc comment", path)
	}
	end := start
	var got []string
	for end < len(lines) && (strings.HasPrefix(lines[end], "//\t") || lines[end] == "//" && end+1 < len(lines) && strings.HasPrefix(lines[end+1], "//\t")) {
		got = append(got, strings.TrimPrefix(strings.TrimPrefix(lines[end], "//"), "\t"))
		end++
	}
	if *update {
		repl := make([]string, len(want))
		for i, l := range want {
			repl[i] = "//\t" + l
			if l == "" {
				repl[i] = "//"
			}
		}
		lines = slices.Replace(lines, start, end, repl...)
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s:%d: the doc comment's example differs from its region (go test ./internal/readme -update rewrites it):\n%s", path, start+1, diff(got, want))
	}
}

// diff shows the first line where got and want differ.
func diff(got, want []string) string {
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return fmt.Sprintf("line %d:\n  shown: %q\n  code:  %q", i+1, g, w)
		}
	}
	return "(same lines)"
}
