import {usageError} from './errors.js'

const UNIT_MS: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000}

/** The longest duration hubctl takes (a year): anything longer is a typo. */
const MAX_MS = 365 * UNIT_MS.d

/**
 * A duration flag such as `90s`, `30m`, `2h`, `1d` or `1h30m`, in milliseconds. A bare number, an
 * unknown unit, zero or more than a year is refused (exit 2) with the flag named.
 */
export function parseDuration(text: string, flag: string): number {
  const value = text.trim().toLowerCase()
  const fix = `give a number and a unit, e.g. ${flag} 90s, 30m, 2h, 1d or 1h30m`
  if (value === '') throw usageError(`${flag} needs a duration`, fix)
  if (/^\d+(\.\d+)?$/.test(value)) throw usageError(`${flag} ${JSON.stringify(text)} has no unit`, fix)
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g
  let total = 0
  let consumed = 0
  for (const match of value.matchAll(part)) {
    if (match.index !== consumed) break
    total += Number(match[1]) * UNIT_MS[match[2]]
    consumed += match[0].length
  }
  if (consumed !== value.length || consumed === 0)
    throw usageError(`${flag} ${JSON.stringify(text)} is not a duration`, fix)
  if (!(total >= 1000)) throw usageError(`${flag} ${JSON.stringify(text)} is shorter than a second`, fix)
  if (total > MAX_MS) throw usageError(`${flag} ${JSON.stringify(text)} is longer than a year`, fix)
  return Math.round(total)
}

/** 5400000 → "1h30m", 90000 → "1m30s": the short form parseDuration reads back. */
export function formatDuration(ms: number): string {
  let rest = Math.round(ms / 1000)
  if (rest === 0) return `${ms}ms`
  const parts: string[] = []
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`)
      rest %= size
    }
  }
  return parts.join('')
}
