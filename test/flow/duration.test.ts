import {describe, expect, it} from 'vitest'
import {parseDuration, readDuration} from '../../src/flow/duration.js'

describe('durations', () => {
  it.each([
    ['90', 90_000],
    ['250ms', 250],
    ['30s', 30_000],
    [' 5m ', 300_000],
    ['1.5h', 5_400_000],
    ['1d', 86_400_000],
    ['2w', 2 * 604_800_000],
  ])('flags read %j as %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms)
  })

  it('refuses junk with a usage error that says how to write one', () => {
    for (const t of ['', 'soon', '5 minutes', '-1s', '1y']) {
      expect(() => parseDuration(t)).toThrow(expect.objectContaining({kind: 'usage', message: `cannot read duration "${t}"`}))
    }
  })

  it('job files (strict) take a whole number and a unit only', () => {
    expect(readDuration('10m', {strict: true})).toBe(600_000)
    expect(readDuration('1w', {strict: true})).toBe(604_800_000)
    for (const t of ['90', '1.5h', '250ms', ' 5m', '5 m']) expect(readDuration(t, {strict: true}), t).toBeUndefined()
  })
})
