// Path regular expressions for the router: a subset of RE2's syntax, parsed once in onConfigure
// into a small NFA program and matched RE2's way, by a DFA built lazily from it: a DFA state is the
// set of program positions the NFA could be in, made the first time a path needs it, with its
// transitions cached per ASCII character. A match costs about one array load per path character,
// linear whatever the pattern — a filter on every request must never backtrack.
//
// Supported: literals, `.`, classes `[a-z0-9_]` / `[^/]`, `\d \D \w \W \s \S`, escaped
// punctuation (`\.`, `\/`), anchors `^` `$`, groups `(...)` `(?:...)` `(?<name>...)`, `|`,
// quantifiers `* + ? {n} {n,} {n,m}` (a trailing `?`, lazy, is accepted; it cannot change a
// yes/no answer). Not supported, and refused with the position: back-references, look-around,
// flags, `\b`, Unicode classes. Like JavaScript's `RegExp.test`, a pattern may match anywhere in
// the path: anchor it (`^/v[0-9]+/`) to match from the start.

const OP_CHAR: u8 = 0;
const OP_ANY: u8 = 1;
const OP_CLASS: u8 = 2;
const OP_SPLIT: u8 = 3;
const OP_JMP: u8 = 4;
const OP_MATCH: u8 = 5;
const OP_BOL: u8 = 6;
const OP_EOL: u8 = 7;

/** Longest program a pattern may compile to (counted repetition copies its operand). */
const MAX_PROGRAM: i32 = 4000;
/** Largest count in `{n,m}` (RE2's limit). */
const MAX_REPEAT: i32 = 1000;
/** DFA states kept per pattern; past this the cache starts over (only odd patterns get there). */
const MAX_STATES: i32 = 256;
/** Characters below this have cached transitions; others are computed each time. */
const CACHED_CHARS: i32 = 128;

/** A set of NFA positions, with what it leads to. */
class DfaState {
  /** The positions that read a character (after following jumps, splits and `^`). */
  consuming: StaticArray<i32>;
  /** A MATCH is reachable before the next character; and the same at the end of the path (`$` holds). */
  matched: bool = false;
  matchedAtEnd: bool = false;
  /** The next state per ASCII character, filled in on first use. */
  next: StaticArray<DfaState | null> = new StaticArray<DfaState | null>(CACHED_CHARS);

  constructor(consuming: StaticArray<i32>) {
    this.consuming = consuming;
  }
}

/** A set of UTF-16 code units: [lo, hi] pairs, possibly negated. */
class CharClass {
  ranges: i32[] = [];
  negated: bool = false;

  add(lo: i32, hi: i32): void {
    this.ranges.push(lo);
    this.ranges.push(hi);
  }

  has(c: i32): bool {
    const r = this.ranges;
    let hit = false;
    for (let i = 0; i < r.length; i += 2) {
      if (c >= unchecked(r[i]) && c <= unchecked(r[i + 1])) {
        hit = true;
        break;
      }
    }
    return hit != this.negated;
  }
}

const NODE_EMPTY = 0;
const NODE_CHAR = 1;
const NODE_ANY = 2;
const NODE_CLASS = 3;
const NODE_BOL = 4;
const NODE_EOL = 5;
const NODE_CONCAT = 6;
const NODE_ALT = 7;
const NODE_REPEAT = 8;

/** The parsed pattern, compiled to a program afterwards. */
class Node {
  kind: i32 = NODE_EMPTY;
  /** CHAR: the code unit; CLASS: the class index. */
  value: i32 = 0;
  /** REPEAT: counts, max -1 for no bound. */
  min: i32 = 0;
  max: i32 = 0;
  children: Node[] = [];

  static of(kind: i32, value: i32 = 0): Node {
    const n = new Node();
    n.kind = kind;
    n.value = value;
    return n;
  }
}

/** A compiled pattern. Build with `Regex.compile`; `matches` allocates only when it meets a DFA state for the first time. */
export class Regex {
  private ops: u8[] = [];
  private a: i32[] = [];
  private b: i32[] = [];
  private classes: CharClass[] = [];
  // Scratch space for building states (a VM runs one callback at a time).
  private list: StaticArray<i32> = new StaticArray<i32>(0);
  private marks: StaticArray<u32> = new StaticArray<u32>(0);
  private stack: StaticArray<i32> = new StaticArray<i32>(0);
  private generation: u32 = 0;
  private found: bool = false;
  /** The program starts with `^`: no match can start after position 0. */
  private anchored: bool = false;
  private start: DfaState | null = null;
  private states: Map<string, DfaState> = new Map();

  private constructor(readonly source: string) {}

  /** The compiled pattern, or an error (`at 4: ...`) in `RegexResult.error`. */
  static compile(pattern: string): RegexResult {
    const parser = new Parser(pattern);
    const regex = new Regex(pattern);
    const tree = parser.parse(regex.classes);
    if (parser.error !== null) return new RegexResult(null, parser.error);
    regex.emit(tree);
    regex.push(OP_MATCH, 0, 0);
    if (regex.ops.length > MAX_PROGRAM) {
      return new RegexResult(null, "the pattern is too large once its repetitions are expanded (" + regex.ops.length.toString() + " steps, at most " + MAX_PROGRAM.toString() + ")");
    }
    regex.anchored = regex.ops[0] == OP_BOL;
    const n = regex.ops.length;
    regex.list = new StaticArray<i32>(n);
    regex.marks = new StaticArray<u32>(n);
    regex.stack = new StaticArray<i32>(2 * n + 2);
    return new RegexResult(regex, null);
  }

  /** Whether the pattern matches somewhere in `text[0, end)`. */
  matches(text: string, end: i32): bool {
    let state = this.start;
    if (state === null) state = this.start = this.stateAfter(null, 0);
    for (let pos = 0; pos < end; pos++) {
      if (state.matched) return true;
      // Anchored and every thread died: nothing can match any more.
      if (state.consuming.length == 0 && this.anchored) return false;
      const c = <i32>text.charCodeAt(pos);
      let next: DfaState | null = c < CACHED_CHARS ? unchecked(state.next[c]) : null;
      if (next === null) {
        next = this.stateAfter(state, c);
        if (c < CACHED_CHARS) unchecked((state.next[c] = next));
      }
      state = next;
    }
    return state.matchedAtEnd;
  }

  /** The state `from` goes to on `c` (the start state when `from` is null), from the cache or made now. */
  private stateAfter(from: DfaState | null, c: i32): DfaState {
    // `$` decides only whether a thread ends here: the same reading positions can come with or
    // without a match at the end, so both closures go into the key.
    this.closure(from, c, true);
    const matchedAtEnd = this.found;
    const length = this.closure(from, c, false);
    const matched = this.found;
    let key = (from === null ? "^" : "") + (matched ? "m" : "") + (matchedAtEnd ? "e" : "") + ":";
    for (let i = 0; i < length; i++) key += unchecked(this.list[i]).toString() + ",";
    if (this.states.has(key)) return this.states.get(key);
    if (this.states.size >= MAX_STATES) {
      // Start over; states already linked stay valid, they are only no longer shared.
      this.states.clear();
      this.start = null;
    }
    const consuming = new StaticArray<i32>(length);
    for (let i = 0; i < length; i++) unchecked((consuming[i] = unchecked(this.list[i])));
    const state = new DfaState(consuming);
    state.matched = matched;
    state.matchedAtEnd = matchedAtEnd;
    this.states.set(key, state);
    return state;
  }

  /**
   * Into the scratch list, sorted: the reading positions after `from` reads `c` (from the start
   * when `from` is null, where `^` holds), plus a fresh start unless anchored, following jumps,
   * splits and anchors. `found` tells whether a MATCH is reachable; `atEnd` whether `$` holds.
   */
  private closure(from: DfaState | null, c: i32, atEnd: bool): i32 {
    this.advance();
    this.found = false;
    let length = 0;
    if (from === null) {
      length = this.follow(length, 0, true, atEnd);
    } else {
      const consuming = from.consuming;
      for (let i = 0; i < consuming.length; i++) {
        const pc = unchecked(consuming[i]);
        const op = unchecked(this.ops[pc]);
        let ok = false;
        if (op == OP_CHAR) ok = c == unchecked(this.a[pc]);
        else if (op == OP_ANY) ok = c != 10;
        else if (op == OP_CLASS) ok = unchecked(this.classes[unchecked(this.a[pc])]).has(c);
        if (ok) length = this.follow(length, pc + 1, false, atEnd);
      }
      // Unanchored search: a match may also start here.
      if (!this.anchored) length = this.follow(length, 0, false, atEnd);
    }
    // Insertion sort (lists are short): one key per set of positions.
    const list = this.list;
    for (let i = 1; i < length; i++) {
      const v = unchecked(list[i]);
      let j = i - 1;
      while (j >= 0 && unchecked(list[j]) > v) {
        unchecked((list[j + 1] = unchecked(list[j])));
        j--;
      }
      unchecked((list[j + 1] = v));
    }
    return length;
  }

  /** A new mark value; on wrap-around, old marks are cleared so that none can equal it. */
  private advance(): void {
    if (++this.generation == 0) {
      for (let i = 0; i < this.marks.length; i++) unchecked((this.marks[i] = 0));
      this.generation = 1;
    }
  }

  /**
   * Adds `start` and everything reachable from it without reading a character to the scratch
   * list (reading positions only, each once per closure); notes a reachable MATCH. Returns the
   * new list length.
   */
  private follow(length: i32, start: i32, bol: bool, eol: bool): i32 {
    const generation = this.generation;
    const stack = this.stack;
    const list = this.list;
    let top = 0;
    unchecked((stack[top++] = start));
    while (top > 0) {
      const pc = unchecked(stack[--top]);
      if (unchecked(this.marks[pc]) == generation) continue;
      unchecked((this.marks[pc] = generation));
      const op = unchecked(this.ops[pc]);
      if (op == OP_JMP) {
        unchecked((stack[top++] = unchecked(this.a[pc])));
      } else if (op == OP_SPLIT) {
        unchecked((stack[top++] = unchecked(this.b[pc])));
        unchecked((stack[top++] = unchecked(this.a[pc])));
      } else if (op == OP_BOL) {
        if (bol) unchecked((stack[top++] = pc + 1));
      } else if (op == OP_EOL) {
        if (eol) unchecked((stack[top++] = pc + 1));
      } else if (op == OP_MATCH) {
        this.found = true;
      } else {
        unchecked((list[length++] = pc));
      }
    }
    return length;
  }

  private push(op: u8, a: i32, b: i32): i32 {
    this.ops.push(op);
    this.a.push(a);
    this.b.push(b);
    return this.ops.length - 1;
  }

  private emit(node: Node): void {
    if (this.ops.length > MAX_PROGRAM) return; // reported by compile
    switch (node.kind) {
      case NODE_EMPTY:
        return;
      case NODE_CHAR:
        this.push(OP_CHAR, node.value, 0);
        return;
      case NODE_ANY:
        this.push(OP_ANY, 0, 0);
        return;
      case NODE_CLASS:
        this.push(OP_CLASS, node.value, 0);
        return;
      case NODE_BOL:
        this.push(OP_BOL, 0, 0);
        return;
      case NODE_EOL:
        this.push(OP_EOL, 0, 0);
        return;
      case NODE_CONCAT:
        for (let i = 0; i < node.children.length; i++) this.emit(node.children[i]);
        return;
      case NODE_ALT: {
        // SPLIT L1, next; L1: first; JMP end; next: SPLIT L2, ... ; last
        const jumps = new Array<i32>();
        for (let i = 0; i < node.children.length - 1; i++) {
          const split = this.push(OP_SPLIT, 0, 0);
          this.a[split] = this.ops.length;
          this.emit(node.children[i]);
          jumps.push(this.push(OP_JMP, 0, 0));
          this.b[split] = this.ops.length;
        }
        this.emit(node.children[node.children.length - 1]);
        for (let i = 0; i < jumps.length; i++) this.a[jumps[i]] = this.ops.length;
        return;
      }
      case NODE_REPEAT: {
        const child = node.children[0];
        for (let i = 0; i < node.min; i++) this.emit(child);
        if (node.max < 0) {
          // L: SPLIT body, end; body: child; JMP L
          const loop = this.push(OP_SPLIT, 0, 0);
          this.a[loop] = this.ops.length;
          this.emit(child);
          this.push(OP_JMP, loop, 0);
          this.b[loop] = this.ops.length;
        } else {
          // Each optional copy may skip straight to the end.
          const skips = new Array<i32>();
          for (let i = node.min; i < node.max; i++) {
            const split = this.push(OP_SPLIT, 0, 0);
            this.a[split] = this.ops.length;
            skips.push(split);
            this.emit(child);
          }
          for (let i = 0; i < skips.length; i++) this.b[skips[i]] = this.ops.length;
        }
        return;
      }
    }
  }
}

export class RegexResult {
  constructor(
    readonly regex: Regex | null,
    readonly error: string | null,
  ) {}
}

/** Recursive descent over the pattern: alternation > concatenation > repetition > atom. */
class Parser {
  pos: i32 = 0;
  error: string | null = null;
  private classes: CharClass[] = [];

  constructor(readonly text: string) {}

  parse(classes: CharClass[]): Node {
    this.classes = classes;
    const node = this.alternation(0);
    if (this.error === null && this.pos < this.text.length) {
      // Only an unbalanced ')' stops the top-level alternation early.
      this.fail(this.pos, "unmatched ')'");
    }
    return node;
  }

  private fail(at: i32, message: string): void {
    if (this.error === null) this.error = "at " + at.toString() + ": " + message;
  }

  private more(): bool {
    return this.error === null && this.pos < this.text.length;
  }

  private peek(): i32 {
    return this.text.charCodeAt(this.pos);
  }

  private alternation(depth: i32): Node {
    const first = this.concatenation(depth);
    if (!this.more() || this.peek() != 0x7c /* | */) return first;
    const alt = Node.of(NODE_ALT);
    alt.children.push(first);
    while (this.more() && this.peek() == 0x7c) {
      this.pos++;
      alt.children.push(this.concatenation(depth));
    }
    return alt;
  }

  private concatenation(depth: i32): Node {
    const seq = Node.of(NODE_CONCAT);
    while (this.more()) {
      const c = this.peek();
      if (c == 0x7c /* | */ || c == 0x29 /* ) */) break;
      const atom = this.atom(depth);
      if (this.error !== null) break;
      seq.children.push(this.repetition(atom));
    }
    return seq;
  }

  private repetition(atom: Node): Node {
    let node = atom;
    let repeated = false;
    while (this.more()) {
      const at = this.pos;
      const c = this.peek();
      let min = 0;
      let max = 0;
      if (c == 0x2a /* * */) {
        min = 0;
        max = -1;
        this.pos++;
      } else if (c == 0x2b /* + */) {
        min = 1;
        max = -1;
        this.pos++;
      } else if (c == 0x3f /* ? */) {
        min = 0;
        max = 1;
        this.pos++;
      } else if (c == 0x7b /* { */) {
        this.pos++;
        min = this.count();
        max = min;
        if (this.more() && this.peek() == 0x2c /* , */) {
          this.pos++;
          max = this.more() && this.peek() == 0x7d ? -1 : this.count();
        }
        if (!this.more() || this.peek() != 0x7d /* } */) {
          this.fail(at, "a repetition is {n}, {n,} or {n,m}; write \\{ for a literal brace");
          return node;
        }
        this.pos++;
        if (min < 0 || max < -1 || (max >= 0 && max < min)) {
          this.fail(at, "bad repetition count");
          return node;
        }
        if (min > MAX_REPEAT || max > MAX_REPEAT) {
          this.fail(at, "repetition count above " + MAX_REPEAT.toString());
          return node;
        }
      } else {
        break;
      }
      if (repeated) {
        this.fail(at, "a repetition of a repetition; group it first: (a*)+");
        return node;
      }
      if (atom.kind == NODE_BOL || atom.kind == NODE_EOL) {
        this.fail(at, "nothing to repeat");
        return node;
      }
      repeated = true;
      const r = Node.of(NODE_REPEAT);
      r.min = min;
      r.max = max;
      r.children.push(node);
      node = r;
      // A lazy marker (`*?`) changes which match is found, never whether one is.
      if (this.more() && this.peek() == 0x3f) this.pos++;
    }
    return node;
  }

  /** Decimal digits; -1 when there are none. */
  private count(): i32 {
    let n = -1;
    while (this.more()) {
      const c = this.peek();
      if (c < 0x30 || c > 0x39) break;
      n = (n < 0 ? 0 : n) * 10 + (c - 0x30);
      if (n > 100000) n = 100000;
      this.pos++;
    }
    return n;
  }

  private atom(depth: i32): Node {
    const at = this.pos;
    const c = this.peek();
    this.pos++;
    switch (c) {
      case 0x2e /* . */:
        return Node.of(NODE_ANY);
      case 0x5e /* ^ */:
        return Node.of(NODE_BOL);
      case 0x24 /* $ */:
        return Node.of(NODE_EOL);
      case 0x5b /* [ */:
        return this.charClass(at);
      case 0x5c /* \ */:
        return this.escape(at, false, null);
      case 0x28 /* ( */: {
        if (depth >= 100) {
          this.fail(at, "groups nested more than 100 deep");
          return Node.of(NODE_EMPTY);
        }
        if (this.pos < this.text.length && this.peek() == 0x3f /* ? */) this.groupPrefix(at);
        const inner = this.alternation(depth + 1);
        if (this.error !== null) return inner;
        if (this.pos >= this.text.length || this.peek() != 0x29) {
          this.fail(at, "unclosed group '('");
          return inner;
        }
        this.pos++;
        return inner;
      }
      case 0x2a /* * */:
      case 0x2b /* + */:
      case 0x3f /* ? */:
      case 0x7b /* { */:
        this.fail(at, "nothing to repeat before '" + String.fromCharCode(c) + "'" + (c == 0x7b ? " (write \\{ for a literal brace)" : ""));
        return Node.of(NODE_EMPTY);
      case 0x7d /* } */:
      case 0x5d /* ] */:
        this.fail(at, "unmatched '" + String.fromCharCode(c) + "' (escape it: \\" + String.fromCharCode(c) + ")");
        return Node.of(NODE_EMPTY);
    }
    return Node.of(NODE_CHAR, c);
  }

  /** After `(?`: non-capturing `?:` and named `?<name>` / `?P<name>` groups; anything else is refused. */
  private groupPrefix(at: i32): void {
    this.pos++; // '?'
    if (this.pos < this.text.length && this.peek() == 0x3a /* : */) {
      this.pos++;
      return;
    }
    if (this.pos < this.text.length && this.peek() == 0x50 /* P */) this.pos++;
    if (this.pos < this.text.length && this.peek() == 0x3c /* < */) {
      const close = this.text.indexOf(">", this.pos);
      const next = this.pos + 1 < this.text.length ? this.text.charCodeAt(this.pos + 1) : 0;
      if (close > this.pos + 1 && next != 0x3d /* = */ && next != 0x21 /* ! */) {
        this.pos = close + 1;
        return;
      }
    }
    this.fail(at, "look-around and flags '(?...' are not supported; use (...) or (?:...)");
  }

  /** `\x` outside or inside a class. Inside, only positive classes may be merged into `into`. */
  private escape(at: i32, inClass: bool, into: CharClass | null): Node {
    if (this.pos >= this.text.length) {
      this.fail(at, "trailing backslash");
      return Node.of(NODE_EMPTY);
    }
    const c = this.peek();
    this.pos++;
    if (c == 0x64 || c == 0x44 || c == 0x77 || c == 0x57 || c == 0x73 || c == 0x53 /* d D w W s S */) {
      const negated = c == 0x44 || c == 0x57 || c == 0x53;
      const lower = negated ? c + 0x20 : c;
      if (inClass) {
        if (negated) {
          this.fail(at, "\\" + String.fromCharCode(c) + " is not supported inside [...]");
          return Node.of(NODE_EMPTY);
        }
        if (into === null) {
          this.fail(at, "a class like \\" + String.fromCharCode(c) + " cannot end a range");
          return Node.of(NODE_EMPTY);
        }
        addNamedClass(into, lower);
        return Node.of(NODE_EMPTY);
      }
      const cls = new CharClass();
      addNamedClass(cls, lower);
      cls.negated = negated;
      this.classes.push(cls);
      return Node.of(NODE_CLASS, this.classes.length - 1);
    }
    if (c == 0x6e /* n */) return Node.of(NODE_CHAR, 10);
    if (c == 0x74 /* t */) return Node.of(NODE_CHAR, 9);
    if (c == 0x72 /* r */) return Node.of(NODE_CHAR, 13);
    const alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    if (alnum || c >= 0x80) {
      this.fail(at, "\\" + String.fromCharCode(c) + " is not supported (supported escapes: \\d \\D \\w \\W \\s \\S \\n \\r \\t, and \\ before punctuation)");
      return Node.of(NODE_EMPTY);
    }
    return Node.of(NODE_CHAR, c);
  }

  private charClass(at: i32): Node {
    const cls = new CharClass();
    if (this.pos < this.text.length && this.peek() == 0x5e /* ^ */) {
      cls.negated = true;
      this.pos++;
    }
    let first = true;
    for (;;) {
      if (this.pos >= this.text.length) {
        this.fail(at, "unclosed class '['");
        return Node.of(NODE_EMPTY);
      }
      const startAt = this.pos;
      let c = this.peek();
      if (c == 0x5d /* ] */ && !first) {
        this.pos++;
        break;
      }
      first = false;
      this.pos++;
      let lo = c;
      if (c == 0x5c /* \ */) {
        const e = this.escape(startAt, true, cls);
        if (this.error !== null) return Node.of(NODE_EMPTY);
        if (e.kind != NODE_CHAR) continue; // \d, \w, \s merged into cls
        lo = e.value;
      }
      // A range a-z, unless '-' is last ("[a-]").
      if (this.pos + 1 < this.text.length && this.peek() == 0x2d /* - */ && this.text.charCodeAt(this.pos + 1) != 0x5d) {
        this.pos++;
        const hiAt = this.pos;
        let hi = this.peek();
        this.pos++;
        if (hi == 0x5c) {
          const e = this.escape(hiAt, true, null);
          if (this.error !== null) return Node.of(NODE_EMPTY);
          hi = e.value;
        }
        if (hi < lo) {
          this.fail(startAt, "range out of order: " + String.fromCharCode(lo) + "-" + String.fromCharCode(hi));
          return Node.of(NODE_EMPTY);
        }
        cls.add(lo, hi);
      } else {
        cls.add(lo, lo);
      }
    }
    this.classes.push(cls);
    return Node.of(NODE_CLASS, this.classes.length - 1);
  }
}

/** \d, \w, \s as ranges (ASCII, as in RE2 without Unicode classes). */
function addNamedClass(cls: CharClass, name: i32): void {
  if (name == 0x64 /* d */) {
    cls.add(0x30, 0x39);
  } else if (name == 0x77 /* w */) {
    cls.add(0x30, 0x39);
    cls.add(0x41, 0x5a);
    cls.add(0x61, 0x7a);
    cls.add(0x5f, 0x5f);
  } else {
    cls.add(0x20, 0x20);
    cls.add(0x09, 0x0d); // \t \n \v \f \r
  }
}
