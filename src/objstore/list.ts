/**
 * Paginated listing as an async iterator: a page is requested only when the loop
 * has consumed the one before, so a loop that breaks requests no further page.
 */
import type { CallContext, ListPage } from './client.js';

/** The objects under `prefix`, page by page from `listPage`. */
export async function* listPages(
  listPage: (prefix: string, token: string | undefined, ctx: CallContext) => Promise<ListPage>,
  prefix: string,
  ctx: CallContext,
): AsyncGenerator<{ name: string; size: number }, void, undefined> {
  let token: string | undefined;
  do {
    const page = await listPage(prefix, token, ctx);
    yield* page.items;
    token = page.next;
  } while (token !== undefined);
}
