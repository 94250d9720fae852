"Run nbdev's docs processors (what `nbdev_proc_nbs` does) without its step that installs quarto."
import nbdev.quarto as q

if __name__ == '__main__':
    q._ensure_quarto = lambda: None  # quarto renders the site in GitHub Actions, not here
    q.nbdev_proc_nbs()
