import {expect} from 'chai'

import {UsersEnvFacts, planUsersEnv} from '../../../src/lib/upgrade/usersenv.js'

/* hubctl upgrade and the users' environment: built again when its base pins changed or its Python is gone. */

const PINS = {jupyterhub: '6.1.1', jupyterlab: '4.6.6', ipykernel: '7.4.0', nbgitpuller: '1.3.0'}
const facts = (fields: Partial<UsersEnvFacts>): UsersEnvFacts => ({
  enabled: true,
  pythonRuns: true,
  installed: {...PINS},
  pinned: {...PINS},
  ...fields,
})

describe("upgrade/usersenv: what hubctl upgrade does with the users' environment", () => {
  it('nothing when it is at the pins, or when servers run the JupyterHub given to init', () => {
    expect(planUsersEnv(facts({}))).to.include({action: 'none'})
    expect(planUsersEnv(facts({enabled: false, installed: {}}))).to.include({action: 'none'})
  })

  it('built again when a base pin changed (JupyterHub, JupyterLab, a package the base gained), naming what', () => {
    const older = planUsersEnv(facts({installed: {...PINS, jupyterhub: '5.2.1', nbgitpuller: undefined}}))
    expect(older.action).to.equal('rebuild')
    expect(older.changed).to.deep.equal(['jupyterhub 5.2.1 → 6.1.1', 'nbgitpuller none → 1.3.0'])
    expect(older.why).to.include('jupyterhub 5.2.1 → 6.1.1')
    // A package the constraints do not pin is no reason.
    expect(planUsersEnv(facts({installed: {...PINS, extra: '1'}, pinned: {...PINS, extra: undefined}}))).to.include({
      action: 'none',
    })
  })

  it('built again when its Python is gone (an OS upgrade), even at the pins', () => {
    const gone = planUsersEnv(facts({pythonRuns: false, installed: {}}))
    expect(gone.action).to.equal('rebuild')
    expect(gone.why).to.include('Python is gone')
  })
})
