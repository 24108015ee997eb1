package simulate

import "time"

// calendarDay is one simulated day.
type calendarDay struct {
	prefix  string // "2025-03-01T", the start of every occurredAt that day
	date    string // "2025-03-01"
	month   int    // months since the first simulated month
	dom     int    // day of the month, 1…31
	weekday time.Weekday
	calMon  time.Month
}

// calendar is the simulated timeline: days [0, len(days)) from Start up to,
// not including, Start + Months.
type calendar struct {
	days []calendarDay
	// monthFirst[m] is the day index of the 1st of month m (negative when
	// the timeline starts mid-month); monthLen[m] its number of days.
	monthFirst []int
	monthLen   []int
}

func newCalendar(start time.Time, months int) *calendar {
	end := start.AddDate(0, months, 0)
	n := int(end.Sub(start) / (24 * time.Hour)) // UTC days are exactly 24 h
	c := &calendar{days: make([]calendarDay, n)}
	y0, m0, _ := start.Date()
	for i := range c.days {
		t := start.AddDate(0, 0, i)
		y, m, d := t.Date()
		date := t.Format(time.DateOnly)
		c.days[i] = calendarDay{
			prefix:  date + "T",
			date:    date,
			month:   (y-y0)*12 + int(m) - int(m0),
			dom:     d,
			weekday: t.Weekday(),
			calMon:  m,
		}
	}
	nm := c.days[n-1].month + 1
	c.monthFirst = make([]int, nm)
	c.monthLen = make([]int, nm)
	for m := range nm {
		first := time.Date(y0, m0+time.Month(m), 1, 0, 0, 0, 0, time.UTC)
		c.monthFirst[m] = int(first.Sub(start) / (24 * time.Hour))
		c.monthLen[m] = first.AddDate(0, 1, -1).Day()
	}
	return c
}

// dayOf returns the day index of day-of-month dom (clamped to the month's
// length) in month m.
func (c *calendar) dayOf(m, dom int) int {
	dom = min(max(dom, 1), c.monthLen[m])
	return c.monthFirst[m] + dom - 1
}

// weekdayOf returns the weekday of day index d, also outside the timeline.
func (c *calendar) weekdayOf(d int) time.Weekday {
	w := (int(c.days[0].weekday) + d%7 + 7) % 7
	return time.Weekday(w)
}

// toBusinessDay moves a weekend day to the Friday before.
func (c *calendar) toBusinessDay(d int) int {
	switch c.weekdayOf(d) {
	case time.Saturday:
		return d - 1
	case time.Sunday:
		return d - 2
	}
	return d
}

func (c *calendar) inRange(d int) bool { return d >= 0 && d < len(c.days) }
