/**
 * Parses `WWW-Authenticate` headers (RFC 7235 §4.1, grammar of §2.1):
 *
 *   WWW-Authenticate = 1#challenge
 *   challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 *   auth-param       = token BWS "=" BWS ( token / quoted-string )
 *
 * Several challenges may share one header line, separated by the same commas
 * that separate parameters: a token NOT followed by "=" starts a new
 * challenge. The header comes from a server we do not control, so the parser
 * never throws: on malformed input it stops and returns the challenges read
 * so far, and oversized input yields nothing.
 */

export interface Challenge {
  /** Lower-cased: 'bearer', 'basic', … */
  scheme: string;
  /** Parameter names lower-cased; values unescaped. First occurrence wins. Null prototype. */
  params: Record<string, string>;
  /** The token68 form (`Negotiate abc==`), when used instead of parameters. */
  token68?: string;
}

/** Real headers are a few hundred bytes; anything far larger is hostile. */
export const MAX_HEADER_LENGTH = 8192;
const MAX_CHALLENGES = 16;
const MAX_PARAMS = 32;

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const TOKEN68_CHAR = /[A-Za-z0-9\-._~+/]/;

export function parseChallenges(header: string | readonly string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const input = typeof header === 'string' ? header : header.join(', ');
  if (input.length > MAX_HEADER_LENGTH) return [];
  return new Parser(input).parse();
}

/** The first challenge of a scheme (case-insensitive), if any. */
export function findChallenge(challenges: readonly Challenge[], scheme: string): Challenge | undefined {
  const wanted = scheme.toLowerCase();
  return challenges.find((c) => c.scheme === wanted);
}

class Parser {
  private i = 0;

  constructor(private readonly s: string) {}

  parse(): Challenge[] {
    const out: Challenge[] = [];
    let current: Challenge | undefined;
    let paramCount = 0;
    for (;;) {
      this.skipListSeparators();
      if (this.i >= this.s.length) return out;
      const name = this.token();
      if (name === '') return out;
      const afterName = this.i;
      this.skipWhitespace();
      if (this.peek() === '=' && current !== undefined && current.token68 === undefined) {
        this.i++;
        this.skipWhitespace();
        const value = this.peek() === '"' ? this.quotedString() : this.tokenOrUndefined();
        if (value === undefined) return out;
        if (++paramCount > MAX_PARAMS) return out;
        const key = name.toLowerCase();
        if (!(key in current.params)) current.params[key] = value;
        if (!this.atSeparatorOrEnd()) return out;
        continue;
      }
      if (this.peek() === '=') return out; // a parameter with no challenge to belong to
      if (out.length >= MAX_CHALLENGES) return out;
      // A scheme must be separated from what follows by whitespace (or end the challenge).
      if (this.i === afterName && !this.atSeparatorOrEnd()) return out;
      current = { scheme: name.toLowerCase(), params: Object.create(null) as Record<string, string> };
      paramCount = 0;
      out.push(current);
      const token68 = this.token68();
      if (token68 !== undefined) current.token68 = token68;
    }
  }

  private peek(): string | undefined {
    return this.s[this.i];
  }

  private skipWhitespace(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.i++;
  }

  private skipListSeparators(): void {
    for (let c = this.peek(); c === ' ' || c === '\t' || c === ','; c = this.peek()) this.i++;
  }

  private atSeparatorOrEnd(): boolean {
    this.skipWhitespace();
    return this.i >= this.s.length || this.peek() === ',';
  }

  private token(): string {
    const start = this.i;
    for (let c = this.peek(); c !== undefined && TCHAR.test(c); c = this.peek()) this.i++;
    return this.s.slice(start, this.i);
  }

  private tokenOrUndefined(): string | undefined {
    const t = this.token();
    return t === '' ? undefined : t;
  }

  /** A token68 only counts when it is all that follows the scheme, up to a comma or the end. */
  private token68(): string | undefined {
    const start = this.i;
    let j = start;
    while (j < this.s.length && TOKEN68_CHAR.test(this.s[j] ?? '')) j++;
    if (j === start) return undefined;
    while (this.s[j] === '=') j++;
    let k = j;
    while (this.s[k] === ' ' || this.s[k] === '\t') k++;
    if (k < this.s.length && this.s[k] !== ',') return undefined;
    this.i = k;
    return this.s.slice(start, j);
  }

  /** RFC 7230 §3.2.6 quoted-string; undefined when unterminated or holding control characters. */
  private quotedString(): string | undefined {
    this.i++; // opening quote
    let value = '';
    while (this.i < this.s.length) {
      const c = this.s[this.i++] ?? '';
      if (c === '"') return value;
      if (c === '\\') {
        const escaped = this.s[this.i++];
        if (escaped === undefined || isControl(escaped)) return undefined;
        value += escaped;
        continue;
      }
      if (isControl(c)) return undefined;
      value += c;
    }
    return undefined;
  }
}

function isControl(c: string): boolean {
  const code = c.charCodeAt(0);
  return (code < 0x20 && c !== '\t') || code === 0x7f;
}
