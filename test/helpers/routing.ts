/** Fixtures for routing tests: registries that only say who they are, and upstreams with defaults. */
import type { Registry } from '../../src/registry/services.js'
import type { RoutedUpstream } from '../../src/routing/routes.js'

/** A registry named `label`: its catalog is the label; asking it for a repository throws the label. */
export const labelled = (label: string): Registry => ({ repository: () => { throw new Error(label) }, catalog: async () => [label] })

export const upstream = (over: Partial<RoutedUpstream> & Pick<RoutedUpstream, 'name' | 'registry'>): RoutedUpstream => ({
  hosts: [],
  namespace: '',
  dockerHub: false,
  allow: [],
  deny: [],
  ...over,
})
