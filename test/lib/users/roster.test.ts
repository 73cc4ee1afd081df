import {expect} from 'chai'

import {applyPlan, checkUserName, emptyPlan, parseCsv, parseRoster, planSync} from '../../../src/lib/users/roster.js'
import {thrown} from '../../helpers/errors.js'

describe('users: names', () => {
  it('accepts portable names, refuses invalid, upper-case and reserved ones with the fix (exit 2)', () => {
    expect(checkUserName('ada_l-1', {pam: true})).to.equal('ada_l-1')
    expect(checkUserName('ada@example.org', {pam: false})).to.equal('ada@example.org')
    const upper = thrown(() => checkUserName('Ada', {pam: true}))
    expect(upper.exitCode).to.equal(2)
    expect(upper.line).to.include('use ada')
    for (const bad of ['', ' ada', 'a b', 'a;b', '../x', 'a\nb', '$x'])
      expect(thrown(() => checkUserName(bad, {pam: false})).exitCode, bad).to.equal(2)
    for (const reserved of ['root', 'daemon', 'nobody', 'www-data'])
      expect(thrown(() => checkUserName(reserved, {pam: false})).line).to.include('reserved system account')
  })

  it('with PAM, a name must also be a Unix login name', () => {
    const dotted = thrown(() => checkUserName('ada.l', {pam: true}))
    expect(dotted.line).to.include('not a valid Unix user name')
    expect(thrown(() => checkUserName('1ada', {pam: true})).exitCode).to.equal(2)
    expect(thrown(() => checkUserName('a'.repeat(33), {pam: true})).exitCode).to.equal(2)
    expect(checkUserName('1ada', {pam: false})).to.equal('1ada')
  })
})

describe('users: roster CSV', () => {
  it('reads quoted fields, CRLF, a BOM, columns in any order and empty lines', () => {
    expect(parseCsv('a,"b,""c"""\r\n"x\ny",z', 'f')).to.deep.equal([
      ['a', 'b,"c"'],
      ['x\ny', 'z'],
    ])
    const roster = parseRoster(
      '\uFEFFemail,username,admin\r\nada@example.org,ada,yes\r\n,grace,\r\n\r\n"t@example.org",ta1,TRUE\r\n',
      'r.csv',
      {pam: true},
    )
    expect(roster).to.deep.equal([
      {name: 'ada', admin: true, email: 'ada@example.org', line: 2},
      {name: 'grace', admin: false, email: undefined, line: 3},
      {name: 'ta1', admin: true, email: 't@example.org', line: 5},
    ])
    expect(parseRoster('username\nada\n', 'r.csv', {pam: true})).to.deep.equal([
      {name: 'ada', admin: false, email: undefined, line: 2},
    ])
  })

  it('refuses, naming the line and the fix: duplicates, bad names, bad flags, bad e-mail, ragged lines', () => {
    const cases: Array<[string, RegExp]> = [
      ['username\nada\nbob\nada\n', /line 4: ada is listed twice \(also line 2\)/],
      ['username,admin\nada,maybe\n', /line 2: admin is "maybe", neither yes nor no/],
      [
        'username\nAda\n',
        /line 2: username "Ada" is not a valid user name \(JupyterHub user names are lower case: use ada\)/,
      ],
      ['username\nroot\n', /line 2: username "root" is a reserved system account/],
      ['username,email\nada,not-an-address\n', /line 2: "not-an-address" is not an e-mail address/],
      ['username,admin\nada\n', /line 2 has 1 field\(s\) where the header has 2/],
      ['username\n"ada\n', /a quoted field is never closed/],
      ['username\nad"a\n', /line 2: a quote inside a field/],
    ]
    for (const [text, message] of cases) {
      const error = thrown(() => parseRoster(text, 'r.csv', {pam: true}))
      expect(error.exitCode, text).to.equal(2)
      expect(error.line, text).to.match(message)
      expect(error.fix, text).to.be.a('string').and.not.equal('')
    }
  })

  it('refuses what is not a roster CSV: no header, unknown columns, binary, empty', () => {
    const cases: Array<[string, RegExp]> = [
      ['ada\nbob\n', /does not start with a CSV header naming the columns username/],
      ['username,role\nada,student\n', /does not start with a CSV header/],
      ['{"users": ["ada"]}', /does not start with a CSV header/],
      ['\x89PNG\r\n\x1a\n\0\0', /is not a CSV text file/],
      ['', /is empty/],
      ['username,username\nada,ada\n', /names username twice/],
    ]
    for (const [text, message] of cases) {
      const error = thrown(() => parseRoster(text, 'r.csv', {pam: false}))
      expect(error.exitCode, text).to.equal(2)
      expect(error.line, text).to.match(message)
    }
  })
})

describe('users: the sync plan', () => {
  const current = {admins: ['prof'], allowedUsers: ['ada', 'bob']}

  it('adds the new, changes admin flags, keeps the rest; removes only with removeMissing', () => {
    const roster = [
      {name: 'prof', admin: true},
      {name: 'ada', admin: true},
      {name: 'carol', admin: false, email: 'c@example.org'},
    ]
    const plan = planSync(current, roster, {removeMissing: false})
    expect(plan.add.map((e) => e.name)).to.deep.equal(['carol'])
    expect(plan.change).to.deep.equal([{name: 'ada', admin: true}])
    expect(plan.keep).to.deep.equal(['prof'])
    expect(plan.remove).to.deep.equal([])
    expect(planSync(current, roster, {removeMissing: true}).remove).to.deep.equal(['bob'])
    // Applying the plan, then planning again with the same roster: nothing to do.
    const after = applyPlan(current, plan)
    expect(after).to.deep.equal({admins: ['ada', 'prof'], allowedUsers: ['ada', 'bob', 'carol', 'prof']})
    const again = planSync(after, roster, {removeMissing: false})
    expect(emptyPlan(again), JSON.stringify(again)).to.equal(true)
  })

  it('revokes admin for a roster line without it, and refuses a plan that leaves no admin', () => {
    const plan = planSync(
      current,
      [
        {name: 'prof', admin: false},
        {name: 'ada', admin: true},
      ],
      {removeMissing: false},
    )
    expect(plan.change).to.deep.equal([
      {name: 'prof', admin: false},
      {name: 'ada', admin: true},
    ])
    const error = thrown(() => planSync(current, [{name: 'ada', admin: false}], {removeMissing: true}))
    expect(error.line).to.include('without an admin')
  })

  it('a 200-user roster against itself is an empty plan', () => {
    const roster = Array.from({length: 200}, (_, i) => ({name: `s${i}`, admin: i === 0}))
    const after = applyPlan(current, planSync(current, roster, {removeMissing: true}))
    expect(after.allowedUsers).to.have.length(200)
    expect(emptyPlan(planSync(after, roster, {removeMissing: true}))).to.equal(true)
  })
})
