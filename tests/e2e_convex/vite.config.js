// Builds the React test page in browser/ (JSX with React's automatic runtime, no plugin).
import { defineConfig } from "vite";

export default defineConfig({
  root: "browser",
  base: "./",
  esbuild: { jsx: "automatic" },
  logLevel: "warn",
  build: { outDir: "../dist", emptyOutDir: true },
});
