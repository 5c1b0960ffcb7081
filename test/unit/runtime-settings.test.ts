/**
 * The V8 flags `smsgw start` sets from config `runtime`: the heap growing
 * factor by default, none when turned off, and never one the operator set
 * on the command line or in NODE_OPTIONS (with dashes or underscores).
 */
import t from 'tap';
import { runtimeFlags } from '../../src/app/runtime-settings.js';
import { loadConfig } from '../../src/config/load.js';

const defaults = loadConfig({ env: {} }).runtime;

t.equal(defaults.heapGrowingPercent, 50, 'the default');
t.same(runtimeFlags(defaults, [], ''), ['--heap-growing-percent=50'], 'set by default');
t.same(runtimeFlags({ heapGrowingPercent: 0 }, [], ''), [], '0: V8 decides');
t.same(runtimeFlags({ heapGrowingPercent: 120 }, ['--enable-source-maps'], '--max-old-space-size=512'), ['--heap-growing-percent=120'], 'other flags do not count');
t.same(runtimeFlags(defaults, ['--heap-growing-percent=10'], ''), [], 'the command line wins');
t.same(runtimeFlags(defaults, ['--heap_growing_percent=10'], ''), [], 'underscores too');
t.same(runtimeFlags(defaults, [], '--enable-source-maps  --heap-growing-percent=20'), [], 'NODE_OPTIONS wins');
t.same(runtimeFlags(defaults, [], '--heap-growing-percent-x=20'), ['--heap-growing-percent=50'], 'a longer name is another flag');
t.throws(() => loadConfig({ env: {}, overrides: { runtime: { heapGrowingPercent: -1 } } }), 'a negative percentage is refused');
t.throws(() => loadConfig({ env: {}, overrides: { runtime: { heapGrowingPercent: 50, other: 1 } } }), 'unknown runtime keys are refused');
