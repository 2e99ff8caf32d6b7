// Bokeh Diffusion for ComfyUI: the frontend side. Colours for the pack's two link types
// (BOKEH_ADAPTER, BOKEH_SWEEP), and room for node titles that the default width cuts off.
import { app } from "../../scripts/app.js";

const LINK_COLORS = { BOKEH_ADAPTER: "#E0A040", BOKEH_SWEEP: "#4FB8C8" };
const MIN_WIDTH = { BokehBlurMeter: 270, BokehContactSheet: 270, BokehAdapterLoader: 300 };

app.registerExtension({
  name: "bokeh_diffusion.ui",
  setup() {
    const canvas = app.canvas;
    if (canvas && canvas.default_connection_color_byType) {
      Object.assign(canvas.default_connection_color_byType, LINK_COLORS);
    }
    const LGraphCanvasClass = window.LGraphCanvas || (canvas && canvas.constructor);
    if (LGraphCanvasClass && LGraphCanvasClass.link_type_colors) {
      Object.assign(LGraphCanvasClass.link_type_colors, LINK_COLORS);
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
