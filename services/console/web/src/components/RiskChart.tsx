// A chart of a customer's daily activity (customer-initiated transactions,
// bars) and end-of-day balance (line) over the last 180 days, drawn with
// uPlot. The numbers are also given as a table for screen readers.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";

export interface DailySeries {
  // Day starts, Unix seconds, ascending.
  days: number[];
  activity: number[];
  balance: (number | null)[];
  currency: string;
}

export function RiskChart({ series, label }: { series: DailySeries; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = () => Math.max(280, el.clientWidth);
    const plot = new uPlot(
      {
        width: width(),
        height: 240,
        legend: { live: false },
        scales: { x: { time: true }, act: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
        axes: [
          {},
          { scale: "act", label: "Transactions per day" },
          { scale: "bal", side: 1, size: 80, label: `Balance (${series.currency})`, grid: { show: false } },
        ],
        series: [
          {},
          { label: "Transactions", scale: "act", stroke: "#3b6fb6", fill: "rgba(59,111,182,0.25)", paths: uPlot.paths.bars!({ size: [0.8, 8] }) },
          { label: `Balance (${series.currency})`, scale: "bal", stroke: "#b5531c", width: 2 },
        ],
      },
      [series.days, series.activity, series.balance],
      el,
    );
    const onResize = () => plot.setSize({ width: width(), height: 240 });
    window.addEventListener("resize", onResize);
    return () => {
      window.removeEventListener("resize", onResize);
      plot.destroy();
    };
  }, [series]);
  return <figure class="chart"><div ref={box} role="img" aria-label={label} /><figcaption>{label}</figcaption></figure>;
}
