// An accessible context menu (the WAI-ARIA menu pattern) for a row or a block.
//
// It opens on right-click, from the row's visible ⋯ button (click, Enter, Space)
// and from the keyboard on the focused row (the ContextMenu key, Shift+F10).
// Arrow keys, Home and End move; Enter and Space choose; Escape and Tab close,
// and focus goes back to where it was.
//
// An item is {label, run, disabledReason}. A disabled item stays in the menu,
// focusable and with its reason shown, so that everyone learns why it cannot be used.

let openMenu = null; // at most one menu is open on a page
let menuCount = 0; // for unique element ids

/**
 * owner: the row or block that the menu belongs to; button: its visible menu button;
 * label: the menu's accessible name; items: a function returning the items, asked on each opening.
 */
export function attachMenu({ owner, button, label, items }) {
  const open = (position, returnFocus, byKeyboard) => {
    closeMenu({ restoreFocus: false });
    openMenu = new Menu({ owner, button, label, items: items(), returnFocus, byKeyboard });
    openMenu.show(position);
  };

  owner.addEventListener("contextmenu", (event) => {
    event.preventDefault();
    // A keyboard shortcut that opened the menu may be followed by the browser's own event.
    if (openMenu?.owner === owner && openMenu.byKeyboard) return;
    const fromPointer = event.clientX !== 0 || event.clientY !== 0;
    const position = fromPointer ? { x: event.clientX, y: event.clientY } : below(owner);
    open(position, focusedWithin(owner) ?? button, !fromPointer);
  });

  owner.addEventListener("keydown", (event) => {
    if (event.key === "ContextMenu" || (event.shiftKey && event.key === "F10")) {
      event.preventDefault();
      const focused = focusedWithin(owner) ?? owner;
      open(below(focused), focused, true);
    }
  });

  button.addEventListener("click", () => {
    if (openMenu?.owner === owner) {
      closeMenu({ restoreFocus: true });
    } else {
      open(below(button), button, false);
    }
  });
}

function closeMenu({ restoreFocus }) {
  const menu = openMenu;
  openMenu = null;
  menu?.close(restoreFocus);
}

function focusedWithin(element) {
  const focused = document.activeElement;
  return focused && element.contains(focused) ? focused : null;
}

function below(element) {
  const rect = element.getBoundingClientRect();
  return { x: rect.left, y: rect.bottom };
}

class Menu {
  constructor({ owner, button, label, items, returnFocus, byKeyboard }) {
    this.owner = owner;
    this.button = button;
    this.returnFocus = returnFocus;
    this.byKeyboard = byKeyboard;
    this.element = document.createElement("ul");
    this.element.className = "menu";
    this.element.id = `menu-${++menuCount}`;
    this.element.setAttribute("role", "menu");
    this.element.setAttribute("aria-label", label);
    this.entries = items.map((item) => this.entry(item));
    this.onOutsidePointer = (event) => {
      if (!this.element.contains(event.target)) closeMenu({ restoreFocus: false });
    };
    this.onResize = () => closeMenu({ restoreFocus: false });
    this.element.addEventListener("keydown", (event) => this.onKeydown(event));
    // Our menu replaces the browser's, on the menu itself too.
    this.element.addEventListener("contextmenu", (event) => event.preventDefault());
  }

  entry({ label, run, disabledReason }) {
    const row = document.createElement("li");
    row.setAttribute("role", "none");
    const entry = document.createElement("button");
    entry.type = "button";
    entry.tabIndex = -1;
    entry.setAttribute("role", "menuitem");
    entry.textContent = label;
    if (disabledReason) {
      const reason = document.createElement("span");
      reason.className = "menu-reason";
      reason.id = `${this.element.id}-reason-${this.element.childElementCount}`;
      reason.textContent = disabledReason;
      entry.setAttribute("aria-label", label);
      entry.setAttribute("aria-describedby", reason.id);
      entry.setAttribute("aria-disabled", "true");
      entry.append(reason);
    }
    entry.addEventListener("click", () => {
      if (disabledReason) return;
      closeMenu({ restoreFocus: true });
      run();
    });
    row.append(entry);
    this.element.append(row);
    return entry;
  }

  show({ x, y }) {
    document.body.append(this.element);
    // Keep the whole menu on screen, flipping it left or up near the edges. The
    // menu is placed on the page, not the viewport, so that it scrolls with its row.
    const { width, height } = this.element.getBoundingClientRect();
    const left = x + width > window.innerWidth ? Math.max(0, x - width) : x;
    const top = y + height > window.innerHeight ? Math.max(0, y - height) : y;
    this.element.style.left = `${left + window.scrollX}px`;
    this.element.style.top = `${top + window.scrollY}px`;
    this.button.setAttribute("aria-expanded", "true");
    this.button.setAttribute("aria-controls", this.element.id);
    document.addEventListener("pointerdown", this.onOutsidePointer, true);
    window.addEventListener("resize", this.onResize);
    this.focus(0);
  }

  close(restoreFocus) {
    document.removeEventListener("pointerdown", this.onOutsidePointer, true);
    window.removeEventListener("resize", this.onResize);
    this.button.setAttribute("aria-expanded", "false");
    this.button.removeAttribute("aria-controls");
    this.element.remove();
    if (restoreFocus) this.returnFocus.focus();
  }

  focus(index) {
    const count = this.entries.length;
    this.entries[((index % count) + count) % count]?.focus({ preventScroll: true });
  }

  onKeydown(event) {
    const current = this.entries.indexOf(document.activeElement);
    const moves = {
      ArrowDown: () => this.focus(current + 1),
      ArrowUp: () => this.focus(current - 1),
      Home: () => this.focus(0),
      End: () => this.focus(this.entries.length - 1),
      Escape: () => closeMenu({ restoreFocus: true }),
      Tab: () => closeMenu({ restoreFocus: true }),
    };
    const move = moves[event.key];
    if (move) {
      event.preventDefault();
      move();
    }
  }
}
