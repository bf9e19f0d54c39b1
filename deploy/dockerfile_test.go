package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const dockerfilePath = "../Dockerfile"

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	stage int // index of the FROM it belongs to
	cmd   string
	args  string
	line  int
}

// parseDockerfile returns the instructions and each stage's FROM arguments.
// It knows comments and backslash continuations, which is all the
// Dockerfile uses (no heredocs, no custom escape character).
func parseDockerfile(t *testing.T, file string) (insts []instruction, stages []string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	var pending strings.Builder
	start := 0
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if strings.HasPrefix(line, "#") || (line == "" && pending.Len() == 0) {
			continue
		}
		if pending.Len() == 0 {
			start = n
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(pending.String()), " ")
		pending.Reset()
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stages = append(stages, strings.TrimSpace(args))
		}
		insts = append(insts, instruction{stage: len(stages) - 1, cmd: cmd, args: strings.Join(strings.Fields(args), " "), line: start})
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if pending.Len() > 0 {
		t.Fatalf("%s ends inside a continued line", file)
	}
	return insts, stages
}

// fromImage returns the image of a FROM's arguments (flags and AS dropped).
func fromImage(args string) string {
	for _, f := range strings.Fields(args) {
		if !strings.HasPrefix(f, "--") {
			return f
		}
	}
	return ""
}

// goBuildPackages returns the package arguments of the `go build` in a RUN
// command, and whether there is one.
func goBuildPackages(run string) ([]string, bool) {
	_, rest, ok := strings.Cut(run, "go build ")
	if !ok {
		return nil, false
	}
	rest, _, _ = strings.Cut(rest, "&&")
	fields := regexp.MustCompile(`"[^"]*"|'[^']*'|\S+`).FindAllString(rest, -1)
	valued := map[string]bool{"-o": true, "-ldflags": true, "-gcflags": true, "-tags": true, "-mod": true, "-p": true}
	var pkgs []string
	for i := 0; i < len(fields); i++ {
		switch f := fields[i]; {
		case valued[f]:
			i++
		case strings.HasPrefix(f, "-"):
		default:
			pkgs = append(pkgs, f)
		}
	}
	return pkgs, true
}

func TestGoBuildPackages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		run  string
		want []string
	}{
		{run: `CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/fanout .`, want: []string{"."}},
		{run: `go build -o /out/x ./cmd/fanout-dev && echo done`, want: []string{"./cmd/fanout-dev"}},
		{run: `go build -tags netgo -o=/x . ./cmd/a`, want: []string{".", "./cmd/a"}},
	}
	for _, tt := range tests {
		if got, _ := goBuildPackages(tt.run); !slices.Equal(got, tt.want) {
			t.Errorf("goBuildPackages(%q) = %q, want %q", tt.run, got, tt.want)
		}
	}
}

// TestDockerfile: a cross-compiling multi-stage build of the production
// entry point only, run as non-root, with no HEALTHCHECK.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	insts, stages := parseDockerfile(t, dockerfilePath)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	final := len(stages) - 1
	if !strings.Contains(stages[0], "--platform=$BUILDPLATFORM") {
		t.Errorf("build stage FROM %q: want --platform=$BUILDPLATFORM (cross-compile, no emulation)", stages[0])
	}
	for i, s := range stages {
		if img := fromImage(s); !pinned(img) {
			t.Errorf("stage %d image %q is not pinned", i, img)
		}
	}
	// The golang images set GOTOOLCHAIN=local: an older Go refuses the module.
	if img, want := fromImage(stages[0]), "golang:"+goVersion(t)+"-"; !strings.HasPrefix(img, want) {
		t.Errorf("build stage image %q, want %s... (go.mod's go version)", img, want)
	}

	args := map[string]bool{}
	var builds [][]string
	var user string
	var expose, entrypoint []string
	copiesBinary := false
	for _, in := range insts {
		switch {
		case strings.Contains(in.args, "fanout-dev"):
			t.Errorf("line %d: %s %s: the image must not contain the dev entry point", in.line, in.cmd, in.args)
		case in.cmd == "HEALTHCHECK":
			t.Errorf("line %d: HEALTHCHECK: the ALB's /healthz probe is the health check (and distroless has no shell)", in.line)
		}
		if in.cmd == "ARG" && in.stage == 0 {
			args[strings.SplitN(in.args, "=", 2)[0]] = true
		}
		if in.cmd == "RUN" {
			if pkgs, ok := goBuildPackages(in.args); ok {
				builds = append(builds, pkgs)
				for _, want := range []string{"CGO_ENABLED=0", "GOOS=$TARGETOS", "GOARCH=$TARGETARCH", "-trimpath", `-ldflags "-s -w"`} {
					if !strings.Contains(in.args, want) {
						t.Errorf("line %d: go build without %s", in.line, want)
					}
				}
			}
		}
		if in.stage != final {
			continue
		}
		switch in.cmd {
		case "USER":
			user = in.args
		case "EXPOSE":
			expose = append(expose, strings.Fields(in.args)...)
		case "ENTRYPOINT":
			entrypoint = append(entrypoint, in.args)
		case "COPY":
			copiesBinary = copiesBinary || (strings.HasPrefix(in.args, "--from=") && strings.HasSuffix(in.args, " /fanout"))
		}
	}
	if !args["TARGETOS"] || !args["TARGETARCH"] {
		t.Errorf("build stage ARGs %v, want TARGETOS and TARGETARCH", args)
	}
	if len(builds) != 1 || !slices.Equal(builds[0], []string{"."}) {
		t.Errorf("go build packages %q, want one build of \".\" (the production entry point)", builds)
	}
	base := fromImage(stages[final])
	switch {
	case user == "" && !strings.HasSuffix(base, ":nonroot"):
		t.Errorf("final stage runs as root: no USER and base %q is not a :nonroot image", base)
	case user != "" && regexp.MustCompile(`^(root|0)(:|$)`).MatchString(user):
		t.Errorf("final stage USER %q is root", user)
	}
	if !slices.Equal(expose, []string{"8080"}) {
		t.Errorf("final stage EXPOSE %v, want 8080 (FANOUT_ADDR's default)", expose)
	}
	if !slices.Equal(entrypoint, []string{`["/fanout"]`}) {
		t.Errorf("ENTRYPOINT %v, want exec form [\"/fanout\"] (signals reach fanout, not a shell)", entrypoint)
	}
	if !copiesBinary {
		t.Error("final stage does not COPY --from the build stage to /fanout")
	}
}

// goVersion is go.mod's go directive.
func goVersion(t *testing.T) string {
	t.Helper()
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// dockerignore is .dockerignore's patterns in order.
type dockerignore []struct {
	negate bool
	re     *regexp.Regexp
}

func readDockerignore(t *testing.T, file string) dockerignore {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var d dockerignore
	for line := range strings.Lines(string(b)) {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(path.Clean(strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/")), "/")
		d = append(d, struct {
			negate bool
			re     *regexp.Regexp
		}{neg, regexp.MustCompile("^" + globRegexp(p) + "$")})
	}
	return d
}

// globRegexp translates a .dockerignore pattern: ** spans directories, *
// and ? do not.
func globRegexp(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	return b.String()
}

// excluded reports whether the context path (slash-separated, relative) is
// left out of the build context: it or a parent directory matches.
func (d dockerignore) excluded(p string) bool {
	out := false
	for _, pat := range d {
		for q := p; q != "."; q = path.Dir(q) {
			if pat.re.MatchString(q) {
				out = !pat.negate
				break
			}
		}
	}
	return out
}

func TestDockerignoreMatching(t *testing.T) {
	t.Parallel()
	d := dockerignore{}
	for _, p := range []string{".git", "deploy", "**/testdata", "**/*_test.go", "*.md", "cmd/fanout-dev"} {
		d = append(d, struct {
			negate bool
			re     *regexp.Regexp
		}{false, regexp.MustCompile("^" + globRegexp(p) + "$")})
	}
	for p, want := range map[string]bool{
		".git/HEAD":                 true,
		"deploy/fanout.yaml":        true,
		"store/testdata/x.json":     true,
		"testdata/a":                true,
		"store/store_test.go":       true,
		"store/store.go":            false,
		"README.md":                 true,
		"store/README.md":           false,
		"cmd/fanout-dev/main.go":    true,
		"cmd/fanout-devtool/x.go":   false,
		"main.go":                   false,
		"go.mod":                    false,
		"internal/awstest/x_test.g": false,
	} {
		if got := d.excluded(p); got != want {
			t.Errorf("excluded(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestDockerignoreKeepsBuildInputs: every file `go build .` reads is in the
// build context; test files and the dev entry point are not.
func TestDockerignoreKeepsBuildInputs(t *testing.T) {
	t.Parallel()
	d := readDockerignore(t, "../.dockerignore")
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), goTool, "list", "-deps", "-f",
		`{{if and .Module .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}`, ".")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps .: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	need := []string{"go.mod", "go.sum"}
	for f := range strings.Lines(string(out)) {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		need = append(need, filepath.ToSlash(rel))
	}
	if len(need) < 3 {
		t.Fatalf("go list found no source files of the main module: %q", out)
	}
	for _, f := range need {
		if d.excluded(f) {
			t.Errorf(".dockerignore leaves out %s, which `go build .` needs", f)
		}
	}
	for _, f := range []string{".git/HEAD", "deploy/fanout.yaml", "cmd/fanout-dev/main.go", "app/config_test.go"} {
		if !d.excluded(f) {
			t.Errorf(".dockerignore keeps %s in the build context; the image build never reads it", f)
		}
	}
}
