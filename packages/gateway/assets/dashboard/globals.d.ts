// The page's one global beside the DOM: uPlot, loaded by its own <script> tag before app.js.
declare const uPlot: typeof import("uplot").default
