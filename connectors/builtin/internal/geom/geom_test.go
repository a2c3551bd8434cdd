package geom

import (
	"testing"

	"github.com/paulmach/orb"
)

func sq(x0, y0, x1, y1 float64) orb.Polygon {
	return orb.Polygon{{{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}, {x0, y0}}}
}

func TestIntersects(t *testing.T) {
	// An L-shaped parcel: its bounding box covers (1.5, 1.5) but the shape
	// does not.
	ell := orb.Polygon{{{0, 0}, {2, 0}, {2, 1}, {1, 1}, {1, 2}, {0, 2}, {0, 0}}}
	withHole := orb.Polygon{
		{{0, 0}, {10, 0}, {10, 10}, {0, 10}, {0, 0}},
		{{4, 4}, {6, 4}, {6, 6}, {4, 6}, {4, 4}},
	}
	tests := []struct {
		name string
		a, b orb.Geometry
		want bool
	}{
		{"point inside", ell, orb.Point{0.5, 0.5}, true},
		{"point in bbox but outside shape", ell, orb.Point{1.5, 1.5}, false},
		{"point on edge", ell, orb.Point{2, 0.5}, true},
		{"point far away", ell, orb.Point{5, 5}, false},
		{"point in hole", withHole, orb.Point{5, 5}, false},
		{"point in ring between hole and shell", withHole, orb.Point{2, 2}, true},
		{"box in notch of L", ell, orb.Bound{Min: orb.Point{1.2, 1.2}, Max: orb.Point{1.8, 1.8}}, false},
		{"box overlapping L", ell, orb.Bound{Min: orb.Point{0.5, 0.5}, Max: orb.Point{3, 3}}, true},
		{"crossing rectangles without vertices inside", sq(0, 1, 3, 2), sq(1, 0, 2, 3), true},
		{"polygon inside polygon", sq(0, 0, 10, 10), sq(1, 1, 2, 2), true},
		{"polygon containing polygon", sq(1, 1, 2, 2), sq(0, 0, 10, 10), true},
		{"touching edges", sq(0, 0, 1, 1), sq(1, 0, 2, 1), true},
		{"disjoint", sq(0, 0, 1, 1), sq(2, 2, 3, 3), false},
		{"polygon inside hole", withHole, sq(4.5, 4.5, 5.5, 5.5), false},
		{"line crossing polygon", sq(0, 0, 1, 1), orb.LineString{{-1, 0.5}, {2, 0.5}}, true},
		{"line outside", sq(0, 0, 1, 1), orb.LineString{{-1, 2}, {2, 2}}, false},
		{"multipolygon second part", orb.MultiPolygon{sq(0, 0, 1, 1), sq(5, 5, 6, 6)}, orb.Point{5.5, 5.5}, true},
		{"multipoint", orb.MultiPoint{{9, 9}, {0.5, 0.5}}, sq(0, 0, 1, 1), true},
		{"point equals point", orb.Point{1, 1}, orb.Point{1, 1}, true},
		{"nil", nil, orb.Point{1, 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Intersects(tt.a, tt.b); got != tt.want {
				t.Errorf("Intersects(a, b) = %v, want %v", got, tt.want)
			}
			if got := Intersects(tt.b, tt.a); got != tt.want {
				t.Errorf("Intersects(b, a) = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"point", `{"type":"Point","coordinates":[114.5,38.0]}`, true},
		{"polygon", `{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}`, true},
		{"short ring", `{"type":"Polygon","coordinates":[[[0,0],[1,0],[0,0]]]}`, false},
		{"unknown type", `{"type":"Circle","coordinates":[0,0]}`, false},
		{"no coordinates", `{"type":"Point"}`, false},
		{"not json", `{`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("Parse(%s) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}
