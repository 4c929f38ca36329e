"""An architecture drawn from its arch: sensors -> branches -> fusion op -> trunk -> decoder ->
head, left to right, as inline SVG. Every box tells its details on hover; the edges say where
each sensor joins and with how many channels.

Where a sensor joins depends on the fusion position: early fusion fuses the raw inputs (the
branches are not used), middle fusion each branch's last stage, multi fusion every stage, late
fusion the per-sensor logits (each branch has its own decoder and head). A position this module
does not know (a plugin's) is drawn like middle fusion, captioned with its own docstring.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import fusion
from autors.report.page import esc

ROW = 50  # vertical space per sensor
BOX_H = 38
COLS = {"sensor": (8, 112), "branch": (146, 160), "op": (346, 140), "trunk": (526, 140),
        "decoder": (706, 150), "head": (900, 112), "out": (1050, 84)}
WIDTH = 1140
_IDS = itertools.count()  # one arrow marker id per diagram: ids are unique in a page


def _box(col: str, y: float, lines: list[str], tip: str, *, fill: str = "#e3f2fd",
         stroke: str = "#1565c0", dashed: bool = False) -> tuple[str, tuple[float, float, float]]:
    """SVG of a box in column `col` centred on `y`; returns it and its (left, right, y)."""
    x, w = COLS[col]
    top = y - BOX_H / 2
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    texts = "".join(
        f'<text x="{x + w / 2:.0f}" y="{top + 15 + 14 * i:.0f}" font-size="{12 if i == 0 else 10}"'
        f' text-anchor="middle"{" font-weight=" + chr(34) + "600" + chr(34) if i == 0 else ""}>'
        f"{esc(line)}</text>" for i, line in enumerate(lines[:2]))
    svg = (f'<g data-tip="{esc(tip)}"><title>{esc(tip)}</title><rect x="{x}" y="{top:.1f}" '
           f'width="{w}" height="{BOX_H}" rx="5" fill="{fill}" stroke="{stroke}"{dash}/>'
           f"{texts}</g>")
    return svg, (x, x + w, y)


def _edge(a: tuple[float, float, float], b: tuple[float, float, float], label: str = "",
          *, dashed: bool = False, offset: float = 0.0) -> str:
    x1, y1 = a[1], a[2] + offset
    x2, y2 = b[0], b[2] + offset
    mid = (x1 + x2) / 2
    dash = ' stroke-dasharray="5 3"' if dashed else ""
    path = (f'<path d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2 - 4:.1f},'
            f'{y2:.1f}" fill="none" stroke="#546e7a" stroke-width="1.3"{dash} '
            'marker-end="url(#arrow)"/>')
    if label:
        if x2 - x1 >= 6 * len(label) + 12:  # room in the gap: on the edge
            at = f'x="{x1 + 6:.1f}" y="{y1 - 4:.1f}"'
        else:  # above the source box's right end
            at = f'x="{x1 - 3:.1f}" y="{y1 - BOX_H / 2 - 2:.1f}" text-anchor="end"'
        path += f'<text {at} font-size="10" fill="#37474f">{esc(label)}</text>'

    return path


def _position_text(position: str) -> str:
    """The position's own description (its class docstring's first sentence)."""
    doc = " ".join((fusion.POSITIONS.get(position).__doc__ or "").split())
    return doc.split(". ")[0].rstrip(".") + "." if doc else position


def _branch_tip(name: str, spec: fusion.arch.BranchSpec, joins: str) -> str:
    lines = [f"branch of {name}: {spec.kind}", (f"width {spec.width} channels, depth {spec.depth} "
             f"blocks (+ stem), kernel {spec.kernel}")]
    if spec.scale:
        lines.append(f"enters the encoder at scale {spec.scale} (input pooled "
                     f"{2 ** spec.scale}x)")
    if spec.dropout:
        lines.append(f"channel dropout {spec.dropout:g} after every stage")
    lines.append(joins)
    return "\n".join(lines)


def arch_svg(arch_dict: Mapping, sensors: Mapping[str, str] | None = None,
             classes: int | None = None, output: str | None = None) -> str:
    """The diagram of one arch (`sensors`: name -> short description such as 'optical, 4
    bands', shown in the input boxes; `output`: what the model outputs, default '`classes`
    classes'). An arch that does not parse is shown as its error."""
    try:
        arch = fusion.Arch.from_dict(arch_dict)
    except fusion.ArchError as err:
        return f'<p class="warn">architecture not drawn: {esc(err)}</p>'
    f, head, dec = arch.fusion, arch.head, arch.decoder
    names = list(arch.branches)
    used = arch.sensors
    position = f.position
    early, late = position == "early", not fusion.POSITIONS.get(position).shared_head
    n_rows = max(len(names), len(getattr(arch, "heads", None) or ()))
    rows = {n: 10 + ROW * (i + (n_rows - len(names)) / 2) + ROW / 2 for i, n in enumerate(names)}
    height = 10 + ROW * n_rows + (40 if dec is not None or not arch.training.empty else 10)
    centre = sum(rows[n] for n in used) / len(used)
    out: list[str] = []

    def add(col: str, y: float, lines: list[str], tip: str, **kw) -> tuple[float, float, float]:
        svg, anchor = _box(col, y, lines, tip, **kw)
        out.append(svg)
        return anchor

    # inputs and branches
    branch_out: dict[str, tuple[float, float, float]] = {}
    for n in names:
        spec = arch.branches[n]
        info = (sensors or {}).get(n, "")
        if not spec.on:
            add("sensor", rows[n], [n, "off: not used"], f"sensor {n}{': ' + info if info else ''}"
                "\nits branch is off: the model accepts the input but never reads it",
                fill="#f5f5f5", stroke="#9e9e9e", dashed=True)
            continue
        s = add("sensor", rows[n], [n, info], f"sensor {n}" + (f": {info}" if info else ""),
                fill="#fff8e1", stroke="#f9a825")
        if early:
            branch_out[n] = s
            continue
        joins = {"middle": f"joins the others after its last stage (stage {spec.depth})",
                 "multi": f"joins at every stage 0..{spec.depth}",
                 }.get(position, "its logits are fused with the others'" if late else
                       f"fused by '{position}'")
        b = add("branch", rows[n], [f"{spec.kind} w{spec.width}",
                                    f"depth {spec.depth}, k{spec.kernel}"
                                    + (f", @1/{2 ** spec.scale}" if spec.scale else "")
                                    + (f", p{spec.dropout:g}" if spec.dropout else "")],
                _branch_tip(n, spec, joins))
        out.append(_edge(s, b, f"@1/{2 ** spec.scale}" if spec.scale else ""))
        branch_out[n] = b

    out_classes = output or (f"{classes} classes" if classes else "classes")
    head_lines = [f"{head.kind} head", f"hidden {head.hidden}" + (f", p{head.dropout:g}"
                                                                  if head.dropout else "")]
    head_tip = (f"head {head.kind}: " + ("linear classifier" if not head.hidden else
                                         f"{head.hidden} hidden units")
                + (f", dropout {head.dropout:g}" if head.dropout else ""))
    dec_lines = [] if dec is None else [f"decoder w{dec.width}", f"{dec.up}" + (
        f", {dec.context}" if dec.context != "none" else "")]
    dec_tip = "" if dec is None else (
        f"decoder: {dec.width} channels at every scale, upsampling {dec.up}, context "
        f"{dec.context}\nskips from the fused maps of scales "
        f"{', '.join(map(str, dec.skips)) or 'none'}\noutput stride 2^{arch.depth}")
    op_tip = (f"fusion op '{f.op}' at position '{position}'"
              + ("" if late or not fusion.POSITIONS.get(position).uses_width
                 else f", {f.width} output channels") + "\n" + _position_text(position))

    if late:
        # every sensor: branch -> [own decoder] -> own head; the op fuses the logits
        heads = []
        for n in used:
            prev = branch_out[n]
            if dec is not None:
                d = add("trunk", rows[n], dec_lines, f"{n}'s own {dec_tip}")
                out.append(_edge(prev, d, f"{arch.branches[n].width} ch"))
                prev = d
            h = add("decoder", rows[n], head_lines, f"{n}'s own {head_tip}")
            out.append(_edge(prev, h))
            heads.append(h)
        op = add("head", centre, [f"{f.op}", "late: fuses logits"], op_tip,
                 fill="#fce4ec", stroke="#ad1457")
        for h in heads:
            out.append(_edge(h, op))
        o = add("out", centre, [out_classes, "per pixel" if arch.dense else "per patch"],
                "the model's output: " + out_classes, fill="#e8f5e9", stroke="#2e7d32")
        out.append(_edge(op, o))
    else:
        op = add("op", centre, [f"{f.op} ({position})", f"w{f.width}"], op_tip,
                 fill="#fce4ec", stroke="#ad1457")
        for n in used:
            spec = arch.branches[n]
            if early:
                out.append(_edge(branch_out[n], op, "raw bands"))
            elif position == "multi":
                stages = spec.depth + 1
                for s in range(min(stages, 4)):
                    out.append(_edge(branch_out[n], op, f"{stages} stages, {spec.width} ch"
                                     if s == 0 else "", offset=(s - (min(stages, 4) - 1) / 2) * 3))
            else:
                out.append(_edge(branch_out[n], op, f"stage {spec.depth}, {spec.width} ch"))
        prev, width = op, f.width
        if f.trunk.on:
            t = f.trunk
            tr = add("trunk", centre, [f"trunk {t.kind} w{t.width}", f"depth {t.depth}, "
                                       f"k{t.kernel}" + (f", p{t.dropout:g}" if t.dropout
                                                         else "")],
                     f"shared trunk after fusion: {t.kind}, width {t.width}, depth {t.depth}, "
                     f"kernel {t.kernel}" + (f", channel dropout {t.dropout:g}"
                                             if t.dropout else ""))
            out.append(_edge(prev, tr, f"{width} ch"))
            prev, width = tr, t.width
        if dec is not None:
            d = add("decoder", centre, dec_lines, dec_tip)
            out.append(_edge(prev, d, f"{width} ch @1/{2 ** arch.depth}"))
            if dec.skips:
                out.append(_edge((op[0], op[1], op[2] + BOX_H / 2 + 6),
                                 (d[0], d[1], d[2] + BOX_H / 2 + 6),
                                 "skips " + ",".join(map(str, dec.skips)), dashed=True))
            prev, width = d, dec.width
        targets = getattr(arch, "heads", None)  # a multi-target network: a head per target
        if targets:
            for i, (name, t) in enumerate(targets.items()):
                y = centre + (i - (len(targets) - 1) / 2) * ROW
                h = add("head", y, [f"{name} head", f"hidden {t.hidden}"],
                        f"head of target {name}: {head.kind}, " + (
                            "linear" if not t.hidden else f"{t.hidden} hidden units")
                        + f", reads the {'fused map' if t.stage == 'fused' else 'last stage'}")
                if t.stage == "fused":  # under the trunk: from the op's bottom edge
                    x, y0 = op[1] - 12, op[2] + BOX_H / 2
                    out.append(f'<path d="M{x:.1f},{y0:.1f} v10" stroke="#546e7a" '
                               'stroke-dasharray="5 3" fill="none"/>')
                    out.append(_edge((x, x, y0 + 10), h, "fused map", dashed=True))
                else:
                    out.append(_edge(prev, h, f"{width} ch"))
                o = add("out", y, [name, "per pixel" if arch.dense else "per patch"],
                        f"output: target {name}", fill="#e8f5e9", stroke="#2e7d32")
                out.append(_edge(h, o))
        else:
            h = add("head", centre, head_lines, head_tip)
            out.append(_edge(prev, h, f"{width} ch"))
            o = add("out", centre, [out_classes, "per pixel" if arch.dense else "per patch"],
                    "the model's output: " + out_classes, fill="#e8f5e9", stroke="#2e7d32")
            out.append(_edge(h, o))
    if not arch.training.empty:
        out.append(f'<text x="8" y="{height - 10}" font-size="11" fill="#555">trained with '
                   + esc(", ".join(f"{k} {v:g}" for k, v in arch.training.to_dict().items()))
                   + "</text>")
    defs = ('<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" '
            'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#546e7a"/></marker>'
            "</defs>")
    marker = f"arrow{next(_IDS)}"
    body = (defs + "".join(out)).replace('id="arrow"', f'id="{marker}"').replace(
        "url(#arrow)", f"url(#{marker})")
    return (f'<p class="note">{esc(_position_text(position))}</p>'
            f'<svg xmlns="http://www.w3.org/2000/svg" class="arch" width="{WIDTH}" '
            f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
            f'aria-label="architecture diagram">{body}</svg>')
