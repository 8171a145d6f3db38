package web

import "fmt"

// chart is a server-rendered SVG bar chart.
type chart struct {
	Title         string
	Width, Height int
	Base          int // y of the axis
	Max           int
	Bars          []bar
}

// bar is one bar of a chart, in SVG user units.
type bar struct {
	X, Y, W, H   int
	TextX, TextY int
	CountY       int
	Count        int
	Label, Tick  string
}

// Chart geometry.
const (
	chartHeight = 150
	chartPlot   = 110 // bar area height
	chartTop    = 14  // room for counts above the tallest bar
)

// newChart lays out counts as bars; label names bar i (its tooltip) and
// tick the axis label shown under every tickEvery-th bar.
func newChart(title string, counts []int, barW int, label, tick func(i int) string, tickEvery int) chart {
	c := chart{Title: title, Width: len(counts)*barW + 2, Height: chartHeight, Base: chartTop + chartPlot}
	for _, n := range counts {
		c.Max = max(c.Max, n)
	}
	for i, n := range counts {
		h := 0
		if c.Max > 0 {
			h = n * chartPlot / c.Max
		}
		if n > 0 && h == 0 {
			h = 1
		}
		b := bar{X: 1 + i*barW + 1, W: barW - 2, H: h, Y: c.Base - h, Count: n, Label: label(i),
			TextX: 1 + i*barW + barW/2, TextY: c.Base + 14, CountY: c.Base - h - 3}
		if i%tickEvery == 0 {
			b.Tick = tick(i)
		}
		c.Bars = append(c.Bars, b)
	}
	return c
}

// expiryCharts turns hourly expiry counts (at least 24) into a chart of the
// next 24 hours and one of the next len/24 days.
func expiryCharts(hours []int) (byHour, byDay chart) {
	h24 := hours[:min(24, len(hours))]
	byHour = newChart("per hour, next 24 hours", h24, 28,
		func(i int) string { return fmt.Sprintf("in %d–%d h", i, i+1) },
		func(i int) string { return fmt.Sprintf("+%dh", i) }, 3)
	days := make([]int, (len(hours)+23)/24)
	for i, n := range hours {
		days[i/24] += n
	}
	byDay = newChart(fmt.Sprintf("per day, next %d days", len(days)), days, 48,
		func(i int) string { return fmt.Sprintf("day %d (in %d–%d h)", i+1, i*24, i*24+24) },
		func(i int) string { return fmt.Sprintf("+%dd", i) }, 1)
	return byHour, byDay
}
