// Adds up Prometheus text from several worker processes into one exposition: samples with the
// same name and labels are summed (counters, histogram buckets and sums, and gauges such as
// memory, whose sum is the node's total); each family keeps its HELP and TYPE lines once.

interface Family {
  comments: string[];
  samples: Map<string, number>;
}

export function mergePrometheus(texts: readonly string[]): string {
  const families = new Map<string, Family>();
  for (const text of texts) {
    let current: Family | undefined;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      if (line.startsWith('#')) {
        // "# HELP name ..." / "# TYPE name type": a family starts (or continues) here.
        const name = line.split(' ')[2] ?? '';
        current = families.get(name);
        if (!current) families.set(name, (current = { comments: [], samples: new Map() }));
        if (!current.comments.includes(line)) current.comments.push(line);
        continue;
      }
      const space = line.lastIndexOf(' ');
      const key = line.slice(0, space);
      const value = Number(line.slice(space + 1));
      if (!current) families.set('', (current = { comments: [], samples: new Map() }));
      current.samples.set(key, (current.samples.get(key) ?? 0) + value);
    }
  }
  const out: string[] = [];
  for (const family of families.values()) {
    out.push(...family.comments);
    for (const [key, value] of family.samples) out.push(`${key} ${value}`);
  }
  return out.join('\n') + '\n';
}
