package report

import (
	"encoding/csv"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
)

// Formats are the output formats, as --format spells them.
var Formats = []string{"html", "md", "csv"}

// Render writes r in format.
func Render(w io.Writer, r *Report, format string) error {
	switch format {
	case "html":
		return page.Execute(w, r)
	case "md":
		return markdown(w, r)
	case "csv":
		return csvOut(w, r)
	}
	return fmt.Errorf("format %q: want one of %s", format, strings.Join(Formats, ", "))
}

// page is self-contained: inline CSS, no script, no external resource.
// Tables carry a caption and scoped headers for screen readers.
var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1f24; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; line-height: 1.4; }
h1 { font-size: 1.5rem; }
p.note { color: #424a53; margin: 0.2rem 0; }
table { border-collapse: collapse; margin: 1.5rem 0; width: 100%; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; font-size: 1.1rem; padding-bottom: 0.4rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.5rem; text-align: right; }
th[scope="row"], thead th:first-child { text-align: left; }
thead th { background: #f3f4f6; }
tbody tr:nth-child(even) { background: #fafbfc; }
p.empty { font-style: italic; color: #424a53; }
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
{{range .Notes}}<p class="note">{{.}}</p>
{{end}}
{{- range .Tables}}
{{- if .Rows}}
<table>
<caption>{{.Caption}}</caption>
<thead><tr>{{range .Columns}}<th scope="col">{{.}}</th>{{end}}</tr></thead>
<tbody>
{{- range .Rows}}
<tr>{{range $i, $c := .}}{{if eq $i 0}}<th scope="row">{{$c}}</th>{{else}}<td>{{$c}}</td>{{end}}{{end}}</tr>
{{- end}}
</tbody>
</table>
{{- else}}
<section aria-label="{{.Caption}}"><h2 style="font-size:1.1rem">{{.Caption}}</h2><p class="empty">{{.Empty}}</p></section>
{{- end}}
{{- end}}
</main>
</body>
</html>
`))

func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func markdown(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", r.Title)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "%s\n", n)
	}
	for _, t := range r.Tables {
		fmt.Fprintf(&b, "\n## %s\n\n", t.Caption)
		if len(t.Rows) == 0 {
			fmt.Fprintf(&b, "%s\n", t.Empty)
			continue
		}
		cells := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			cells[i] = mdCell(c)
		}
		fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
		align := make([]string, len(t.Columns))
		for i := range align {
			align[i] = "---:"
		}
		align[0] = ":---"
		fmt.Fprintf(&b, "| %s |\n", strings.Join(align, " | "))
		for _, row := range t.Rows {
			cells := make([]string, len(row))
			for i, c := range row {
				cells[i] = mdCell(c)
			}
			fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// csvCell keeps a spreadsheet from reading a cell as a formula: a leading
// "+" is dropped, and text starting with - = or @ that is not a number is
// quoted with a leading apostrophe.
func csvCell(s string) string {
	s = strings.TrimPrefix(s, "+")
	if s != "" && strings.ContainsRune("-=@", rune(s[0])) {
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return "'" + s
		}
	}
	return s
}

// csvOut writes the report long: one line per cell, section,row,column,value.
func csvOut(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"section", "row", "column", "value"}); err != nil {
		return err
	}
	for _, t := range r.Tables {
		for _, row := range t.Rows {
			for i := 1; i < len(row) && i < len(t.Columns); i++ {
				if err := cw.Write([]string{csvCell(t.Caption), csvCell(row[0]), csvCell(t.Columns[i]), csvCell(row[i])}); err != nil {
					return err
				}
			}
		}
	}
	cw.Flush()
	return cw.Error()
}
