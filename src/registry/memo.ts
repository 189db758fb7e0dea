/**
 * Results of a pure parse by input text, for the warm path: clients send the
 * same few names, digests and Accept headers over and over. Bounded by a
 * count and simply cleared when full (cheaper per lookup than an LRU, and a
 * miss only costs the parse). A parse that throws is not remembered.
 */
export function memoize<T>(limit: number, parse: (text: string) => T): (text: string) => T {
  const results = new Map<string, T>();
  return (text) => {
    const known = results.get(text);
    if (known !== undefined) return known;
    const value = parse(text);
    if (results.size >= limit) results.clear();
    results.set(text, value);
    return value;
  };
}
