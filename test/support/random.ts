/** A small seeded PRNG (mulberry32) so a failing random test can be replayed from its seed. */
export interface Rng {
  seed: number;
  next(): number;
  int(min: number, max: number): number;
}

export function rng(seed = Number(process.env.CRR_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31))): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { seed, next, int: (min, max) => min + Math.floor(next() * (max - min + 1)) };
}

/** Run `body`; if it throws, say which seed reproduces it. */
export async function withSeed<T>(r: Rng, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    const e = err as Error;
    e.message = `${e.message}\n(reproduce with CRR_TEST_SEED=${r.seed})`;
    throw e;
  }
}
