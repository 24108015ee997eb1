// ReportTable shows one laid-out table (a caption, column headings, rows
// whose first cell names the row) as an accessible table, or its "empty"
// sentence under the caption as a heading when it has no rows. The KPI
// page and the shadow report lay their numbers out as such tables.
import type { ComponentChild } from "preact";
import type { Table } from "../kpis/report";

export function ReportTable({ t, cell }: { t: Table; cell?: (value: string, row: string[], column: number) => ComponentChild }) {
  if (t.rows.length === 0) {
    return (<section><h2>{t.caption}</h2><p class="empty">{t.empty}</p></section>);
  }
  return (
    <div class="scroll" tabIndex={0}>
      <table class="grid">
        <caption>{t.caption}</caption>
        <thead><tr>{t.columns.map((c) => <th scope="col">{c}</th>)}</tr></thead>
        <tbody>
          {t.rows.map((row) => (
            <tr>
              {row.map((c, i) => (i === 0 ? <th scope="row">{c}</th> : <td>{cell ? cell(c, row, i) : c}</td>))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
