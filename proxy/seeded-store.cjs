'use strict'
/**
 * A configurable-http-proxy storage backend (--storage-backend) that starts with routes.
 *
 * hubctl replaces the proxy (token rotation, restart) by starting a new one beside the old. The
 * new proxy must route users correctly from its first request, before any API call could add the
 * routes: this store loads them from the JSON file named by HUBCTL_PROXY_SEED ({"routes": {path:
 * data}}, written 0600 by hubctl) when the proxy starts, then behaves as CHP's own MemoryStore,
 * to which it delegates. CommonJS because CHP loads a backend with require().
 */
const fs = require('node:fs')
const path = require('node:path')

function trimPrefix(prefix) {
  if (prefix.length === 0 || prefix[0] !== '/') prefix = '/' + prefix
  if (prefix.length > 1 && prefix[prefix.length - 1] === '/') prefix = prefix.slice(0, -1)
  return prefix
}

function readSeed(file) {
  if (!file) return {}
  try {
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8'))
    return parsed && typeof parsed.routes === 'object' && parsed.routes !== null ? parsed.routes : {}
  } catch (error) {
    // Without its routes the proxy still sends everyone to the hub, which re-adds them.
    process.stderr.write(
      `hubctl seeded store: cannot read ${file} (${error.code || error.message}); starting with no routes\n`,
    )
    return {}
  }
}

class SeededStore {
  constructor() {
    const seed = readSeed(process.env.HUBCTL_PROXY_SEED)
    const storeUrl = require('node:url').pathToFileURL(
      path.join(path.dirname(require.resolve('configurable-http-proxy/package.json')), 'lib/store.js'),
    ).href
    this.ready = import(storeUrl).then(async ({MemoryStore}) => {
      const store = new MemoryStore()
      for (const [routePath, data] of Object.entries(seed)) {
        if (trimPrefix(routePath) === '/') continue // the proxy adds its default target itself
        const copy = {...data}
        if (typeof copy.last_activity === 'string') copy.last_activity = new Date(copy.last_activity)
        await store.add(routePath, copy)
      }
      return store
    })
  }

  cleanPath(routePath) {
    return trimPrefix(routePath)
  }

  get(routePath) {
    return this.ready.then((store) => store.get(routePath))
  }
  getTarget(routePath) {
    return this.ready.then((store) => store.getTarget(routePath))
  }
  getAll() {
    return this.ready.then((store) => store.getAll())
  }
  add(routePath, data) {
    return this.ready.then((store) => store.add(routePath, data))
  }
  update(routePath, data) {
    return this.ready.then((store) => store.update(routePath, data))
  }
  remove(routePath) {
    return this.ready.then((store) => store.remove(routePath))
  }
}

module.exports = SeededStore
