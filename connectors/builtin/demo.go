package builtin

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed testdata/demo/*.yaml
var demoFS embed.FS

var demoVar = regexp.MustCompile(`\$\{([A-Z_]+)\}`)

// DemoDepartments returns the departments that have a demo connector
// configuration: approval, market and resources.
func DemoDepartments() []string {
	entries, _ := fs.Glob(demoFS, "testdata/demo/*.yaml")
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(e, "testdata/demo/"), ".yaml"))
	}
	sort.Strings(out)
	return out
}

// DemoSettings returns the connector type and settings of the demo
// connector of a simulated department, with the placeholders ${MARKET_URL},
// ${APPROVAL_URL} and ${RESOURCES_URL} replaced from vars (keyed without
// "${}"). A placeholder without a value is an error.
func DemoSettings(department string, vars map[string]string) (typ string, settings []byte, err error) {
	raw, err := demoFS.ReadFile("testdata/demo/" + department + ".yaml")
	if err != nil {
		return "", nil, fmt.Errorf("no demo connector for department %q (known: %s)", department, strings.Join(DemoDepartments(), ", "))
	}
	var missing []string
	text := demoVar.ReplaceAllStringFunc(string(raw), func(m string) string {
		name := m[2 : len(m)-1]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", nil, fmt.Errorf("demo connector %s: no value for %s", department, strings.Join(missing, ", "))
	}
	for name, v := range vars {
		if u, err := url.Parse(v); err != nil || u.Host == "" || strings.ContainsAny(v, " \n#\"'") {
			return "", nil, fmt.Errorf("demo connector %s: %s=%q is not a URL", department, name, v)
		}
	}
	var doc struct {
		Type     string    `yaml:"type"`
		Settings yaml.Node `yaml:"settings"`
	}
	dec := yaml.NewDecoder(strings.NewReader(text))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return "", nil, fmt.Errorf("demo connector %s: %w", department, err)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(&doc.Settings); err != nil {
		return "", nil, fmt.Errorf("demo connector %s: encoding settings: %w", department, err)
	}
	if err := enc.Close(); err != nil {
		return "", nil, fmt.Errorf("demo connector %s: encoding settings: %w", department, err)
	}
	return doc.Type, buf.Bytes(), nil
}
