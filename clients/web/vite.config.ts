import { defineConfig } from "vite";

// The bundle is embedded in chat-server and served at `/`. Output must be
// byte-identical from build to build (CI rebuilds it and compares with the
// committed copy): no source maps, and file names under assets/ carry a hash
// of their content, so the server may cache them forever.
export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
    assetsInlineLimit: 0,
  },
});
