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

/** A table with its own columns (one row per thing measured); the first column left-aligned, numbers right-aligned. */
export interface Grid {
  title: string;
  header: string[];
  rows: string[][];
  /** Lines printed under the table (how it was measured, what a column means). */
  notes?: string[];
}

export function printGrid(grid: Grid): void {
  const widths = grid.header.map((h, i) => Math.max(h.length, ...grid.rows.map((r) => (r[i] ?? '').length)));
  const last = grid.header.length - 1;
  const line = (c: string[]) =>
    c.map((x = '', i) => (i === 0 || i === last ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  ').trimEnd();
  process.stdout.write(`\n${grid.title}\n${line(grid.header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  for (const r of grid.rows) process.stdout.write(line(r) + '\n');
  for (const n of grid.notes ?? []) process.stdout.write(`  ${n}\n`);
}

/** A number for a table cell: 3 significant digits at most, '–' when there is none. */
export function cell(v: number | undefined, digits?: number): string {
  if (v === undefined || !Number.isFinite(v)) return '–';
  if (digits !== undefined) return v.toFixed(digits);
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}
