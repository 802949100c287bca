// `admin.configDump.show` paths: which parts of the snapshot a path may name, and what is wrong
// with one. The config loader checks them; the admin's /config_dump walks them.

/** The parts of the snapshot a show path may start with. */
export const DUMP_SECTIONS = ['admin', 'listeners', 'clusters', 'filters', 'tracing'] as const;

/** What is wrong with a show path (`filters.headers.configuration.request`), or undefined when it is fine. */
export function showPathProblem(path: string): string | undefined {
  const steps = path.split('.');
  if (steps.some((s) => s === '')) return `${JSON.stringify(path)} has an empty step; write steps separated by single dots, as in filters.headers.configuration.request`;
  if (steps[0] !== '*' && !(DUMP_SECTIONS as readonly string[]).includes(steps[0]!)) {
    return `${JSON.stringify(path)} must start with one of ${DUMP_SECTIONS.join(', ')} (or *)`;
  }
  return undefined;
}
