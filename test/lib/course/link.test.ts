import {expect} from 'chai'

import {assignmentLink} from '../../../src/lib/course/link.js'
import {thrown} from '../../helpers/errors.js'

const hub = {domains: ['hub.example.org'], ports: {https: 443}}

describe('assignment links (nbgitpuller)', () => {
  it("is the hub's git-pull URL with repo, branch, targetpath and urlpath, each URL-encoded", () => {
    const link = assignmentLink(hub, {
      repo: 'https://github.com/org/course.git',
      branch: 'main',
      path: 'week 1/intro&more.ipynb',
    })
    expect(link.url).to.equal(
      'https://hub.example.org/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2Forg%2Fcourse.git&branch=main&targetpath=course&urlpath=lab%2Ftree%2Fcourse%2Fweek%201%2Fintro%26more.ipynb',
    )
    expect(link).to.include({folder: 'course', urlpath: 'lab/tree/course/week 1/intro&more.ipynb', branch: 'main'})
    const params = new URL(link.url).searchParams
    expect(params.get('repo')).to.equal('https://github.com/org/course.git')
    expect(params.get('urlpath')).to.equal('lab/tree/course/week 1/intro&more.ipynb')
  })

  it("leaves the branch to the repository's default when none is given, and names another HTTPS port", () => {
    const link = assignmentLink({domains: ['localhost'], ports: {https: 8443}}, {repo: 'http://127.0.0.1:9418/labs/'})
    expect(link.url).to.equal(
      'https://localhost:8443/hub/user-redirect/git-pull?repo=http%3A%2F%2F127.0.0.1%3A9418%2Flabs%2F&targetpath=labs&urlpath=lab%2Ftree%2Flabs',
    )
    expect(link.branch).to.equal(null)
  })

  it('refuses what is not a repository URL, credentials in it, a bad branch or a path leaving the repository: exit 2', () => {
    const cases: Array<[Parameters<typeof assignmentLink>[1], RegExp]> = [
      [{repo: 'course.git'}, /is not a URL/],
      [{repo: 'file:///srv/course.git'}, /not an https, http or git URL/],
      [{repo: 'https://me:secret@github.com/org/course.git'}, /holds a user name or password/],
      [{repo: 'https://github.com/'}, /does not end in a name/],
      [{repo: 'https://github.com/org/course.git', branch: '--upload-pack=x'}, /is not a branch name/],
      [{repo: 'https://github.com/org/course.git', path: '../../etc/passwd'}, /is not a path inside the repository/],
      [{repo: 'https://github.com/org/course.git', path: '/etc/passwd'}, /is not a path inside the repository/],
    ]
    for (const [request, pattern] of cases) {
      const error = thrown(() => assignmentLink(hub, request))
      expect(error.exitCode, JSON.stringify(request)).to.equal(2)
      expect(error.message).to.match(pattern)
      expect(error.message).to.not.include('secret')
    }
  })
})
