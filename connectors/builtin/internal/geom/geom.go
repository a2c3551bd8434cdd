// Package geom decides whether two planar geometries intersect. It refines
// the bounding-box answers of department systems: a feature whose bounding
// box touches the query area but whose shape does not is not a match.
//
// Coordinates are treated as planar (longitude, latitude), which is exact
// enough for parcels a few hundred metres across. Points on a boundary count
// as inside, as in github.com/paulmach/orb/planar.
package geom

import (
	"encoding/json"
	"fmt"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
	"github.com/paulmach/orb/planar"
)

// Parse decodes a GeoJSON geometry object.
func Parse(b []byte) (orb.Geometry, error) {
	g, err := geojson.UnmarshalGeometry(b)
	if err != nil {
		return nil, fmt.Errorf("decoding GeoJSON geometry: %w", err)
	}
	if g.Coordinates == nil && g.Geometries == nil {
		return nil, fmt.Errorf("decoding GeoJSON geometry: no coordinates")
	}
	geo := g.Geometry()
	if err := check(geo); err != nil {
		return nil, err
	}
	return geo, nil
}

// ParseValue decodes a GeoJSON geometry held as a decoded JSON value
// (map[string]any).
func ParseValue(v any) (orb.Geometry, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding geometry: %w", err)
	}
	return Parse(b)
}

func check(g orb.Geometry) error {
	switch g := g.(type) {
	case orb.Polygon:
		for _, r := range g {
			if len(r) < 4 {
				return fmt.Errorf("polygon ring has %d positions, need at least 4", len(r))
			}
		}
	case orb.MultiPolygon:
		for _, p := range g {
			if err := check(p); err != nil {
				return err
			}
		}
	case orb.LineString:
		if len(g) < 2 {
			return fmt.Errorf("line string has %d positions, need at least 2", len(g))
		}
	case orb.Collection:
		for _, c := range g {
			if err := check(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// Intersects reports whether a and b share at least one point.
func Intersects(a, b orb.Geometry) bool {
	if a == nil || b == nil {
		return false
	}
	if !a.Bound().Intersects(b.Bound()) {
		return false
	}
	// Break collections down to their parts.
	switch g := a.(type) {
	case orb.Collection:
		for _, p := range g {
			if Intersects(p, b) {
				return true
			}
		}
		return false
	case orb.MultiPolygon:
		for _, p := range g {
			if Intersects(p, b) {
				return true
			}
		}
		return false
	case orb.MultiPoint:
		for _, p := range g {
			if Intersects(p, b) {
				return true
			}
		}
		return false
	case orb.MultiLineString:
		for _, p := range g {
			if Intersects(p, b) {
				return true
			}
		}
		return false
	case orb.Bound:
		return Intersects(g.ToPolygon(), b)
	case orb.Ring:
		return Intersects(orb.Polygon{g}, b)
	}
	switch b.(type) {
	case orb.Collection, orb.MultiPolygon, orb.MultiPoint, orb.MultiLineString, orb.Bound, orb.Ring:
		return Intersects(b, a)
	}
	// Both are now Point, LineString or Polygon.
	switch g := a.(type) {
	case orb.Point:
		return containsPoint(b, g)
	case orb.LineString:
		switch h := b.(type) {
		case orb.Point:
			return containsPoint(g, h)
		case orb.LineString:
			return segmentsCross(g, h)
		case orb.Polygon:
			return lineIntersectsPolygon(g, h)
		}
	case orb.Polygon:
		switch h := b.(type) {
		case orb.Point:
			return planar.PolygonContains(g, h)
		case orb.LineString:
			return lineIntersectsPolygon(h, g)
		case orb.Polygon:
			return polygonsIntersect(g, h)
		}
	}
	return false
}

// containsPoint reports whether g (Point, LineString or Polygon) holds p.
func containsPoint(g orb.Geometry, p orb.Point) bool {
	switch g := g.(type) {
	case orb.Point:
		return g.Equal(p)
	case orb.LineString:
		for i := 0; i+1 < len(g); i++ {
			if onSegment(g[i], g[i+1], p) {
				return true
			}
		}
		return false
	case orb.Polygon:
		return planar.PolygonContains(g, p)
	}
	return false
}

func lineIntersectsPolygon(l orb.LineString, p orb.Polygon) bool {
	for _, pt := range l {
		if planar.PolygonContains(p, pt) {
			return true
		}
	}
	for _, r := range p {
		if segmentsCross(l, orb.LineString(r)) {
			return true
		}
	}
	return false
}

func polygonsIntersect(a, b orb.Polygon) bool {
	// A vertex of one inside the other, or crossing edges. Holes are
	// respected by PolygonContains; two shapes that only overlap inside a
	// hole have crossing edges with the hole ring or no common point.
	for _, pt := range a[0] {
		if planar.PolygonContains(b, pt) {
			return true
		}
	}
	for _, pt := range b[0] {
		if planar.PolygonContains(a, pt) {
			return true
		}
	}
	for _, ra := range a {
		for _, rb := range b {
			if segmentsCross(orb.LineString(ra), orb.LineString(rb)) {
				return true
			}
		}
	}
	return false
}

// segmentsCross reports whether any segment of a meets any segment of b.
func segmentsCross(a, b orb.LineString) bool {
	for i := 0; i+1 < len(a); i++ {
		for j := 0; j+1 < len(b); j++ {
			if segmentIntersect(a[i], a[i+1], b[j], b[j+1]) {
				return true
			}
		}
	}
	return false
}

func orient(a, b, c orb.Point) float64 {
	return (b[0]-a[0])*(c[1]-a[1]) - (b[1]-a[1])*(c[0]-a[0])
}

func sign(v float64) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

func onSegment(a, b, p orb.Point) bool {
	if orient(a, b, p) != 0 {
		return false
	}
	return min(a[0], b[0]) <= p[0] && p[0] <= max(a[0], b[0]) &&
		min(a[1], b[1]) <= p[1] && p[1] <= max(a[1], b[1])
}

func segmentIntersect(p1, p2, q1, q2 orb.Point) bool {
	d1 := sign(orient(q1, q2, p1))
	d2 := sign(orient(q1, q2, p2))
	d3 := sign(orient(p1, p2, q1))
	d4 := sign(orient(p1, p2, q2))
	if d1*d2 < 0 && d3*d4 < 0 {
		return true
	}
	return (d1 == 0 && onSegment(q1, q2, p1)) ||
		(d2 == 0 && onSegment(q1, q2, p2)) ||
		(d3 == 0 && onSegment(p1, p2, q1)) ||
		(d4 == 0 && onSegment(p1, p2, q2))
}
