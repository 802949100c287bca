// One row of `npm run bench` output, and the table that prints them.

export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  target?: string;
  note?: string;
}

export function printTable(title: string, rows: BenchRow[]): void {
  const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  const cells = rows.map((r) => [r.name, fmt(r.value), r.unit, r.target ?? '', r.note ?? '']);
  const header = ['benchmark', 'value', 'unit', 'target', 'note'];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => (i === 1 ? x.padStart(widths[i]) : x.padEnd(widths[i]))).join('  ').trimEnd();
  process.stdout.write(`\n${title}\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  for (const c of cells) process.stdout.write(line(c) + '\n');
}
