package deploy

import (
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const composePath = "../compose.yml"

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Ports       []string          `yaml:"ports"`
	Environment map[string]string `yaml:"environment"`
	Profiles    []string          `yaml:"profiles"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// kumoVersion is the emulator version in go.mod, without the "v".
func kumoVersion(t *testing.T) string {
	t.Helper()
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/sivchari/kumo v(\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod does not require github.com/sivchari/kumo")
	}
	return string(m[1])
}

// pinned reports whether image names a fixed tag or digest.
func pinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	i := strings.LastIndex(image, ":")
	return i > strings.LastIndex(image, "/") && image[i+1:] != "latest" && image[i+1:] != ""
}

func TestPinned(t *testing.T) {
	t.Parallel()
	for image, want := range map[string]bool{
		"ghcr.io/sivchari/kumo:0.33.1":      true,
		"localhost:5000/fanout":             false,
		"localhost:5000/fanout:1.2":         true,
		"localstack/localstack":             false,
		"localstack/localstack:latest":      false,
		"golang@sha256:0123456789abcdef":    true,
		"gcr.io/distroless/static-debian12": false,
		"gcr.io/distroless/static:nonroot":  true,
		"localstack/localstack:2026.9.0":    true,
	} {
		if got := pinned(image); got != want {
			t.Errorf("pinned(%q) = %v, want %v", image, got, want)
		}
	}
}

// TestCompose: `docker compose up` runs fanout against kumo with no account;
// the localstack profile adds LocalStack and a fanout pointed at it.
func TestCompose(t *testing.T) {
	t.Parallel()
	var cf composeFile
	readYAML(t, composePath, &cf)
	known := variableNames()

	names := slices.Sorted(maps.Keys(cf.Services))
	if want := []string{"fanout", "fanout-localstack", "kumo", "localstack"}; !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}

	tests := []struct {
		fanout, emulator string
		profile          string // "" for the default `up`
		hostPort         string
	}{
		{fanout: "fanout", emulator: "kumo", hostPort: "8080"},
		{fanout: "fanout-localstack", emulator: "localstack", profile: "localstack", hostPort: "8081"},
	}
	for _, tt := range tests {
		f, emu := cf.Services[tt.fanout], cf.Services[tt.emulator]
		wantProfiles := []string(nil)
		if tt.profile != "" {
			wantProfiles = []string{tt.profile}
		}
		if !slices.Equal(f.Profiles, wantProfiles) || !slices.Equal(emu.Profiles, wantProfiles) {
			t.Errorf("%s profiles %v and %s profiles %v, want both %v", tt.fanout, f.Profiles, tt.emulator, emu.Profiles, wantProfiles)
		}
		if f.Build == nil {
			t.Errorf("%s is not built from the Dockerfile", tt.fanout)
		}
		if want := "127.0.0.1:" + tt.hostPort + ":8080"; !slices.Contains(f.Ports, want) {
			t.Errorf("%s ports %v, want %s", tt.fanout, f.Ports, want)
		}
		for name := range f.Environment {
			if strings.HasPrefix(name, "FANOUT_") && !known[name] {
				t.Errorf("%s sets %s, which fanout does not read (not in app.Variables)", tt.fanout, name)
			}
		}
		for _, name := range []string{"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
			if f.Environment[name] == "" {
				t.Errorf("%s does not set %s", tt.fanout, name)
			}
		}
		if f.Environment["FANOUT_CREATE_RESOURCES"] != "true" {
			t.Errorf("%s FANOUT_CREATE_RESOURCES = %q, want true: nothing else creates the tables locally", tt.fanout, f.Environment["FANOUT_CREATE_RESOURCES"])
		}
		u, err := url.Parse(f.Environment["AWS_ENDPOINT_URL"])
		if err != nil || u.Scheme != "http" || u.Hostname() != tt.emulator || u.Port() != "4566" {
			t.Errorf("%s AWS_ENDPOINT_URL = %q, want http://%s:4566", tt.fanout, f.Environment["AWS_ENDPOINT_URL"], tt.emulator)
		}
		if f.DependsOn[tt.emulator].Condition != "service_healthy" {
			t.Errorf("%s depends_on %s %q, want service_healthy", tt.fanout, tt.emulator, f.DependsOn[tt.emulator].Condition)
		}
		if emu.Healthcheck == nil || len(emu.Healthcheck.Test) == 0 {
			t.Errorf("%s has no healthcheck: service_healthy would never hold", tt.emulator)
		}
		if !pinned(emu.Image) {
			t.Errorf("%s image %q is not pinned", tt.emulator, emu.Image)
		}
	}

	kumo := cf.Services["kumo"]
	if want := "ghcr.io/sivchari/kumo:" + kumoVersion(t); kumo.Image != want {
		t.Errorf("kumo image %q, want %q (go.mod's kumo, which the tests run in-process)", kumo.Image, want)
	}
	if !slices.Contains(kumo.Ports, "127.0.0.1:4566:4566") {
		t.Errorf("kumo ports %v, want 127.0.0.1:4566:4566", kumo.Ports)
	}
	// fanout's API has no authentication and the emulators take any
	// credentials: nothing is published beyond the host.
	for _, name := range names {
		for _, p := range cf.Services[name].Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %q on every interface, want 127.0.0.1:%s", name, p, p)
			}
		}
	}
	ls := cf.Services["localstack"]
	if !regexp.MustCompile(`^\$\{LOCALSTACK_AUTH_TOKEN(:?-[^}]*)?\}$`).MatchString(ls.Environment["LOCALSTACK_AUTH_TOKEN"]) {
		t.Errorf("localstack LOCALSTACK_AUTH_TOKEN = %q, want it read from the environment: ${LOCALSTACK_AUTH_TOKEN:-}", ls.Environment["LOCALSTACK_AUTH_TOKEN"])
	}
	if !strings.HasPrefix(ls.Image, "localstack/localstack:") {
		t.Errorf("localstack image %q, want localstack/localstack:<version>", ls.Image)
	}
}

// TestImagesMatchContainerTests: compose and the container-backed tests
// (internal/awstest) run the same emulator images.
func TestImagesMatchContainerTests(t *testing.T) {
	t.Parallel()
	var cf composeFile
	readYAML(t, composePath, &cf)
	src, err := os.ReadFile("../internal/awstest/container.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"kumo", "localstack"} {
		if image := cf.Services[svc].Image; !strings.Contains(string(src), `"`+image+`"`) {
			t.Errorf("compose runs %s as %q, which internal/awstest/container.go does not use", svc, image)
		}
	}
}
