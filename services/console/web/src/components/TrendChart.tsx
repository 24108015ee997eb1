// A line per tier over the months of a KPI answer (churn or retention
// rate, in per cent), drawn with uPlot. The page puts the same numbers in a
// table next to it for screen readers and for reading exact values.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";

export interface Trend {
  // Month starts, Unix seconds (UTC), ascending.
  months: number[];
  lines: { label: string; values: (number | null)[] }[];
}

// Distinguishable colours (Okabe–Ito) and dash patterns, so lines differ by
// more than colour.
const colours = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#56b4e9"];
const dashes = [[], [8, 4], [2, 3], [10, 3, 2, 3], [4, 4]];

export function TrendChart({ trend, label, unit }: { trend: Trend; label: string; unit: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    // Without a canvas (no 2D context: a text browser, or the unit tests'
    // happy-dom) only the caption and the page's table remain.
    if (!el || !document.createElement("canvas").getContext("2d")) return;
    const width = () => Math.max(280, el.clientWidth);
    const plot = new uPlot(
      {
        width: width(),
        height: 220,
        legend: { live: false },
        scales: { x: { time: true } },
        axes: [{}, { label: unit, size: 60 }],
        series: [{}, ...trend.lines.map((l, i) => ({ label: l.label, stroke: colours[i % colours.length], dash: dashes[i % dashes.length], width: 2, points: { show: true } }))],
      },
      [trend.months, ...trend.lines.map((l) => l.values)],
      el,
    );
    const onResize = () => plot.setSize({ width: width(), height: 220 });
    window.addEventListener("resize", onResize);
    return () => {
      window.removeEventListener("resize", onResize);
      plot.destroy();
    };
  }, [trend, unit]);
  return <figure class="chart"><div ref={box} role="img" aria-label={label} /><figcaption>{label}</figcaption></figure>;
}
