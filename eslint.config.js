// Lint gate (`npm run lint`, run by .ci/run before the tests): ESLint's
// recommended rules plus typescript-eslint's type-aware recommended rules
// (`recommendedTypeChecked`) over src, test and bench, typed by tsconfig.json.
// Every rule of both sets is on for src and bench. The few places where a rule
// is configured, and why, are below; single exceptions are marked in the code
// with `// eslint-disable-next-line rule -- reason`.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.tap/**', 'bin/**', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    files: ['src/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // A variable that a closure reads before its one assignment (a
      // constructor's `self` made inside super(), a teardown's handle) cannot
      // be const where it is declared.
      // Passing on a caught value unchanged (`catch (e) { p = Promise.reject(e) }`)
      // keeps whatever was thrown; only a value of a known non-Error type is refused.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // A leading underscore marks a name that is bound on purpose and not read
      // (an interface's parameter, a key taken out by destructuring `...rest`).
      '@typescript-eslint/no-unused-vars': ['error', {
        argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_',
        destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true,
      }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // tap tracks every subtest that `t.test(...)` queues and runs them in
      // order; not awaiting it is tap's documented use, so that one call is
      // known safe. Every other promise in a test must still be handled.
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [{ from: 'package', name: 'test', package: '@tapjs/test' }],
      }],
      // tap ends a subtest when the promise its callback returns settles; a
      // synchronous callback must call t.end() itself. `async (t) => { ... }`
      // without an await is therefore tap's way of saying "end when done", and
      // test doubles implement async interfaces with plain values. The rule
      // stays on for src and bench.
      '@typescript-eslint/require-await': 'off',
    },
  },
);
