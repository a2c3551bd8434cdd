package simulate

// Intersects reports whether the box b intersects the envelope e.
func (b BBox) Intersects(e BBox) bool {
	return b.MinLon <= e.MaxLon && e.MinLon <= b.MaxLon && b.MinLat <= e.MaxLat && e.MinLat <= b.MaxLat
}

// Contains reports whether the point lies in the box (borders included).
func (b BBox) Contains(lon, lat float64) bool {
	return lon >= b.MinLon && lon <= b.MaxLon && lat >= b.MinLat && lat <= b.MaxLat
}

// IntersectsBBox reports whether the polygon and the box share a point.
func (p Polygon) IntersectsBBox(b BBox) bool {
	if len(p.Coordinates) == 0 || !b.Intersects(p.Bounds()) {
		return false
	}
	ring := p.Coordinates[0]
	for _, c := range ring {
		if b.Contains(c[0], c[1]) {
			return true
		}
	}
	corners := [5][2]float64{{b.MinLon, b.MinLat}, {b.MaxLon, b.MinLat}, {b.MaxLon, b.MaxLat}, {b.MinLon, b.MaxLat}, {b.MinLon, b.MinLat}}
	for _, c := range corners[:4] {
		if pointInRing(c, ring) {
			return true
		}
	}
	for i := 0; i+1 < len(ring); i++ {
		for j := range 4 {
			if segmentsIntersect(ring[i], ring[i+1], corners[j], corners[j+1]) {
				return true
			}
		}
	}
	return false
}

// pointInRing is the even-odd rule.
func pointInRing(pt [2]float64, ring [][2]float64) bool {
	in := false
	for i, j := 0, len(ring)-1; i < len(ring); j, i = i, i+1 {
		a, b := ring[i], ring[j]
		if (a[1] > pt[1]) != (b[1] > pt[1]) && pt[0] < (b[0]-a[0])*(pt[1]-a[1])/(b[1]-a[1])+a[0] {
			in = !in
		}
	}
	return in
}

func orient(a, b, c [2]float64) float64 {
	return (b[0]-a[0])*(c[1]-a[1]) - (b[1]-a[1])*(c[0]-a[0])
}

func onSegment(a, b, c [2]float64) bool {
	return min(a[0], b[0]) <= c[0] && c[0] <= max(a[0], b[0]) && min(a[1], b[1]) <= c[1] && c[1] <= max(a[1], b[1])
}

func segmentsIntersect(p1, p2, q1, q2 [2]float64) bool {
	d1, d2 := orient(q1, q2, p1), orient(q1, q2, p2)
	d3, d4 := orient(p1, p2, q1), orient(p1, p2, q2)
	if ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0)) {
		return true
	}
	return (d1 == 0 && onSegment(q1, q2, p1)) || (d2 == 0 && onSegment(q1, q2, p2)) ||
		(d3 == 0 && onSegment(p1, p2, q1)) || (d4 == 0 && onSegment(p1, p2, q2))
}
