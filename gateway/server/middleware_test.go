package server

import (
	"maps"
	"slices"
	"testing"
)

func TestPatternMethods(t *testing.T) {
	cases := []struct {
		patterns []string
		want     []string
	}{
		{nil, nil},
		{[]string{"GET /v1/changes:watch"}, []string{"GET", "HEAD"}},
		{[]string{"POST /a", "GET /b"}, []string{"GET", "HEAD", "POST"}},
		{[]string{"/any"}, []string{""}},
		{[]string{"example.org/any"}, []string{""}},
		{[]string{"DELETE example.org/x"}, []string{"DELETE"}},
	}
	for _, tc := range cases {
		got := slices.Sorted(maps.Keys(patternMethods(tc.patterns)))
		if !slices.Equal(got, tc.want) {
			t.Errorf("patternMethods(%q) = %q, want %q", tc.patterns, got, tc.want)
		}
	}
}
