// Paged lists: the first step of every informer.

/** Lists in pages, as client-go's reflector does, so one large list does not load the API server at once. */
export const LIST_PAGE = 500;

export async function listAll<T>(page: (cont: string | undefined) => Promise<{ items: T[]; metadata?: { resourceVersion?: string; _continue?: string; continue?: string } }>): Promise<{ items: T[]; metadata: { resourceVersion?: string } }> {
  const items: T[] = [];
  let cont: string | undefined;
  let resourceVersion: string | undefined;
  do {
    const r = await page(cont);
    items.push(...r.items);
    // Every page of one list carries the version of the snapshot it was cut from.
    resourceVersion = r.metadata?.resourceVersion;
    cont = r.metadata?.continue || r.metadata?._continue || undefined;
  } while (cont);
  return { items, metadata: { resourceVersion } };
}
