import {Layout} from '../config/layout.js'
import {Settings, SettingsStore} from '../config/settings.js'
import {hasControlChar} from '../validate.js'
import {usageError} from '../errors.js'

/**
 * `hubctl link`: the nbgitpuller link that hands out a repository's notebooks. A student who
 * clicks it logs in (if not yet), their server starts, nbgitpuller clones the repository into their
 * home (or, when it is there, merges the new commits without losing their edits: nbgitpuller's
 * rule) and JupyterLab opens the file. nbgitpuller's parameters: repo, branch (absent: the
 * repository's default branch), targetpath (the folder in the home), urlpath (what opens).
 */

export interface LinkRequest {
  repo: string
  branch?: string
  /** The file (or folder) in the repository to open, relative to its top. */
  path?: string
}

export interface LinkResult {
  url: string
  repo: string
  branch: string | null
  /** The folder the repository is cloned into, in the student's home. */
  folder: string
  /** What JupyterLab opens. */
  urlpath: string
}

/** The folder nbgitpuller clones into: the repository's last path part, without `.git`. */
export function repoFolder(repo: string): string {
  const last = new URL(repo).pathname.replace(/\/+$/, '').split('/').pop() ?? ''
  const folder = last.replace(/\.git$/, '')
  if (!/^[A-Za-z0-9._-]+$/.test(folder) || folder === '.' || folder === '..')
    throw usageError(
      `the repository ${JSON.stringify(repo)} does not end in a name a folder can have`,
      'give the URL of the repository itself, such as https://github.com/ORG/course.git',
    )
  return folder
}

function checkRepo(repo: string): string {
  let url: URL
  try {
    url = new URL(repo)
  } catch {
    throw usageError(
      `the repository ${JSON.stringify(repo)} is not a URL`,
      'give the URL students clone it from, such as https://github.com/ORG/course.git',
    )
  }
  if (!['https:', 'http:', 'git:'].includes(url.protocol) || hasControlChar(repo))
    throw usageError(
      `the repository ${JSON.stringify(repo)} is not an https, http or git URL`,
      'give the URL students clone it from, such as https://github.com/ORG/course.git',
    )
  if (url.username || url.password)
    throw usageError(
      'the repository URL holds a user name or password, which every student who gets the link would see',
      'give a URL without credentials (a public repository, or one the hub reaches without them)',
    )
  return repo
}

function checkBranch(branch: string): string {
  if (!/^[A-Za-z0-9._/-]+$/.test(branch) || branch.startsWith('-') || branch.includes('..'))
    throw usageError(`--branch ${JSON.stringify(branch)} is not a branch name`, 'give a branch such as main')
  return branch
}

function checkFile(file: string): string {
  const parts = file.split('/').filter((p) => p !== '' && p !== '.')
  if (parts.length === 0 || parts.includes('..') || file.startsWith('/') || hasControlChar(file))
    throw usageError(
      `--path ${JSON.stringify(file)} is not a path inside the repository`,
      'give the notebook relative to the top of the repository, such as week1/intro.ipynb',
    )
  return parts.join('/')
}

/** The link, for the hub's primary name and HTTPS port (every value URL-encoded). */
export function assignmentLink(
  settings: Pick<Settings, 'domains'> & {ports: Pick<Settings['ports'], 'https'>},
  request: LinkRequest,
): LinkResult {
  const repo = checkRepo(request.repo)
  const branch = request.branch === undefined ? undefined : checkBranch(request.branch)
  const folder = repoFolder(repo)
  const file = request.path === undefined ? undefined : checkFile(request.path)
  const urlpath = `lab/tree/${folder}${file ? `/${file}` : ''}`
  const params: Array<[string, string]> = [
    ['repo', repo],
    ...(branch ? [['branch', branch] as [string, string]] : []),
    ['targetpath', folder],
    ['urlpath', urlpath],
  ]
  const port = settings.ports.https === 443 ? '' : `:${settings.ports.https}`
  const query = params.map(([key, value]) => `${key}=${encodeURIComponent(value)}`).join('&')
  return {
    url: `https://${settings.domains[0]}${port}/hub/user-redirect/git-pull?${query}`,
    repo,
    branch: branch ?? null,
    folder,
    urlpath,
  }
}

/** `hubctl link` for the hub under this prefix. */
export async function hubAssignmentLink(layout: Layout, request: LinkRequest): Promise<LinkResult> {
  return assignmentLink(await new SettingsStore(layout).load(), request)
}
