// Exact numbers and full timestamps for the dashboard. No float arithmetic on money:
// quantities, prices and P&L arrive as decimal strings ("0.05755588") or, from older or
// outside publishers, JSON numbers, and both are shown digit for digit. A number is
// first written as the shortest decimal that reads back as the same double
// (String(n)), which is what its JSON said; from there on everything is string work.

const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;
const MAX_EXPONENT = 400; // beyond any double; a longer string is shown as given

/** {sign, int, frac} of a decimal string or number (exponent applied), or null if it is not one. */
export function parseDecimal(value) {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return null;
    value = String(value);
  }
  if (typeof value !== "string") return null;
  const match = DECIMAL.exec(value.trim());
  if (!match || (match[2] === "" && !match[3])) return null;
  const [, sign, whole, fraction = "", exponentText] = match;
  const exponent = Number(exponentText || 0);
  if (Math.abs(exponent) > MAX_EXPONENT) return null;
  let digits = whole + fraction;
  let point = whole.length + exponent; // where the decimal point falls in `digits`
  if (point < 0) {
    digits = "0".repeat(-point) + digits;
    point = 0;
  } else if (point > digits.length) {
    digits += "0".repeat(point - digits.length);
  }
  const int = digits.slice(0, point).replace(/^0+(?=\d)/, "") || "0";
  return { sign: sign === "-" ? "-" : "", int, frac: digits.slice(point) };
}

/** -1, 0 or 1: the sign of a decimal, exactly. */
export function decimalSign(value) {
  const parsed = parseDecimal(value);
  if (!parsed || !/[1-9]/.test(parsed.int + parsed.frac)) return 0;
  return parsed.sign === "-" ? -1 : 1;
}

/** Whether a decimal is zero (absent counts as zero). */
export function isZero(value) {
  return decimalSign(value) === 0;
}

/** Compare two decimals exactly (for sorting); absent ones sort first. */
export function compareDecimal(a, b) {
  const x = parseDecimal(a);
  const y = parseDecimal(b);
  if (!x || !y) return (x ? 1 : 0) - (y ? 1 : 0);
  const sx = decimalSign(a);
  const sy = decimalSign(b);
  if (sx !== sy) return sx - sy;
  return sx * compareMagnitude(x, y);
}

function compareMagnitude(x, y) {
  if (x.int.length !== y.int.length) return x.int.length - y.int.length;
  const width = Math.max(x.frac.length, y.frac.length);
  const left = x.int + x.frac.padEnd(width, "0");
  const right = y.int + y.frac.padEnd(width, "0");
  return left < right ? -1 : left > right ? 1 : 0;
}

let separators = null;

function localSeparators() {
  if (separators === null) {
    const parts = new Intl.NumberFormat().formatToParts(1234567.5);
    const part = (type, fallback) => (parts.find((p) => p.type === type) || { value: fallback }).value;
    separators = { group: part("group", ","), decimal: part("decimal", ".") };
  }
  return separators;
}

/** A decimal for display, every digit kept (grouped in the reader's locale); "—" when absent. */
export function formatDecimal(value, { signed = false } = {}) {
  if (value === null || value === undefined || value === "") return "—";
  const parsed = parseDecimal(value);
  if (!parsed) return String(value); // not a decimal: shown as received, never guessed at
  const { group, decimal } = localSeparators();
  const int = parsed.int.replace(/\B(?=(\d{3})+(?!\d))/g, group);
  const sign = parsed.sign === "-" && decimalSign(value) !== 0 ? "−" : signed && decimalSign(value) > 0 ? "+" : "";
  return sign + int + (parsed.frac ? decimal + parsed.frac : "");
}

// ---- time ---------------------------------------------------------------------------

const TIME_PARTS = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
  second: "2-digit", hourCycle: "h23", timeZoneName: "short" };
let timeFormat = null;

/** A contract timestamp in the reader's zone: {date, time, zone, utc}, or null if it cannot be read. */
export function formatTimestamp(iso) {
  const moment = new Date(iso);
  if (typeof iso !== "string" || Number.isNaN(moment.getTime())) return null;
  timeFormat = timeFormat || new Intl.DateTimeFormat(undefined, TIME_PARTS);
  const part = Object.fromEntries(timeFormat.formatToParts(moment).map((p) => [p.type, p.value]));
  // The UTC text comes from the string itself, so its microseconds survive (a Date keeps milliseconds).
  const utc = iso.replace("T", " ").replace(/Z$/, " UTC");
  return {
    date: `${part.year}-${part.month}-${part.day}`,
    time: `${part.hour}:${part.minute}:${part.second}`,
    zone: part.timeZoneName || "",
    utc,
  };
}
