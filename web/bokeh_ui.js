// Bokeh Diffusion for ComfyUI: the frontend side. Colours for the pack's two link types
// (BOKEH_ADAPTER, BOKEH_SWEEP), and room for node titles that the default width cuts off.
import { app } from "../../scripts/app.js";

const LINK_COLORS = { BOKEH_ADAPTER: "#E0A040", BOKEH_SWEEP: "#4FB8C8" };
const MIN_WIDTH = { BokehBlurMeter: 270, BokehContactSheet: 270, BokehAdapterLoader: 300 };

// The colour palette rewrites these tables whenever it loads, setting every data type it has no
// colour for to "": keep ours unless a palette gives the type a colour of its own.
function pinColor(table, type, color) {
  let value = color;
  Object.defineProperty(table, type, {
    configurable: true,
    enumerable: true,
    get: () => value,
    set: (v) => {
      value = v || color;
    },
  });
}

app.registerExtension({
  name: "bokeh_diffusion.ui",
  setup() {
    const canvas = app.canvas;
    const LGraphCanvasClass = window.LGraphCanvas || (canvas && canvas.constructor);
    for (const table of [canvas && canvas.default_connection_color_byType, LGraphCanvasClass && LGraphCanvasClass.link_type_colors]) {
      if (!table) continue;
      for (const [type, color] of Object.entries(LINK_COLORS)) pinColor(table, type, color);
    }
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const width = MIN_WIDTH[nodeData.name];
    if (!width) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated ? onNodeCreated.apply(this, arguments) : undefined;
      if (this.size && this.size[0] < width) {
        this.size[0] = width;
      }
      return result;
    };
  },
});
