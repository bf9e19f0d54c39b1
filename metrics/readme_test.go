package metrics

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeDocumentsEveryMetric: the README's "Operating it" table has a
// row for every metric fanout defines, and names no other.
func TestReadmeDocumentsEveryMetric(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Operating it\n")
	if !ok {
		t.Fatal("README.md has no ## Operating it section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	documented := map[string]bool{}
	row := regexp.MustCompile("(?m)^\\| (`fanout_[a-z_]+`(?:, `fanout_[a-z_]+`)*)")
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		for _, name := range regexp.MustCompile("fanout_[a-z_]+").FindAllString(m[1], -1) {
			documented[name] = true
		}
	}
	defined := map[string]bool{}
	for _, d := range New().Definitions() {
		defined[d.Name] = true
		if !documented[d.Name] {
			t.Errorf("README.md's Operating it table has no row for %s", d.Name)
		}
	}
	for name := range documented {
		if !defined[name] {
			t.Errorf("README.md's Operating it table documents %s, which fanout does not define", name)
		}
	}
}
